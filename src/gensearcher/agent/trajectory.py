"""The record of one research run: every message as the policy saw it, every step, the answer.

A trajectory is the only record of a run. The batch runner writes it as JSON; the training issue turns it
into SFT data or GRPO rollouts (per-turn token ids are kept when the backend returns them); the report
shows it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from gensearcher.agent.registry import RegisteredImage
from gensearcher.messages import Message
from gensearcher.policy.base import TokenUsage

Termination = Literal[
    "answer",  # a valid answer
    "answer_invalid",  # the last possible answer failed validation
    "no_answer",  # the budget ran out without an answer
    "repeated_response",  # the model repeated its previous turn word for word
    "context_exceeded",  # the conversation outgrew the context guard or the model's window
    "error",  # the policy failed (infrastructure); the batch can retry the item
]


class Task(BaseModel):
    """One research request. KnowGen items carry meta and gt_image; other fields are kept as given."""

    model_config = {"extra": "allow"}

    id: int | str | None = None
    prompt: str = Field(..., min_length=1)
    meta: dict[str, Any] = {}
    gt_image: str | None = None


class ReferenceImage(BaseModel):
    """A reference image of the answer, enriched from the image registry."""

    img_id: str
    note: str = ""
    url: str | None = None
    local_path: str
    title: str | None = None
    page_url: str | None = None
    sha256: str | None = None


class Answer(BaseModel):
    gen_prompt: str
    reference_images: list[ReferenceImage] = []
    reordered: bool = Field(False, description="The model's list was not in id order and was sorted.")
    duplicates_removed: int = 0


class ToolCallRecord(BaseModel):
    name: str
    arguments: Any
    result_text: str
    error: str | None = None
    duration_s: float
    image_ids: list[str] = []
    cache_keys: list[str] = []


class Step(BaseModel):
    """One policy turn and what followed from it."""

    round: int
    final_round: bool = False
    response: str
    finish_reason: str | None = None
    usage: TokenUsage = TokenUsage()
    latency_s: float = 0.0
    attempts: int = 1
    action: Literal["tool_call", "answer", "invalid"]
    tool_call: ToolCallRecord | None = None
    problem: str | None = Field(None, description="Format or validation problem shown to the model.")
    prompt_token_ids: list[int] | None = None
    completion_token_ids: list[int] | None = None
    completion_logprobs: list[float] | None = None


class Trajectory(BaseModel):
    task: Task
    messages: list[Message]
    steps: list[Step] = []
    images: list[RegisteredImage] = []
    answer: Answer | None = None
    termination: Termination
    error: str | None = None
    rounds: int = 0
    usage: TokenUsage = TokenUsage()
    started_at: str
    duration_s: float = 0.0
    policy_s: float = 0.0
    tools_s: float = 0.0
    config: dict[str, Any] = {}
    versions: dict[str, Any] = {}

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        return [step.tool_call for step in self.steps if step.tool_call is not None]
