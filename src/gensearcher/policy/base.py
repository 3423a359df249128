"""The policy interface: one method, `complete(messages) -> PolicyResponse`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel

from gensearcher.messages import Message


class TokenUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class PolicyResponse(BaseModel):
    """One model turn.

    The token ids and log-probabilities are filled when the backend can return them (vLLM with
    `return_token_ids`, the transformers backend); a trainer uses them as the exact sampled sequence.
    """

    text: str
    finish_reason: str | None = None
    usage: TokenUsage = TokenUsage()
    prompt_token_ids: list[int] | None = None
    completion_token_ids: list[int] | None = None
    completion_logprobs: list[float] | None = None
    latency_s: float = 0.0
    attempts: int = 1


class PolicyBackend(Protocol):
    """Anything that can continue a conversation. Chosen by name in `gensearcher.policy.build_policy`."""

    async def complete(self, messages: Sequence[Message], *, max_tokens: int) -> PolicyResponse:
        """Return the next assistant turn. Raises PolicyError (or ContextLengthExceeded) on failure."""
        ...

    def describe(self) -> dict[str, Any]:
        """Backend name, model and version, for the trajectory's record."""
        ...

    async def aclose(self) -> None:
        """Release connections or model memory."""
        ...
