"""Token-exact rollouts for GRPO: the agent loop's policy, backed by the model being trained.

Each rollout gets its own `RolloutPolicy`. The first turn renders the system prompt and the task with
the processor, exactly as the in-process inference backend does. Every later turn is token-in/token-out:
the context is the previous context, the completion as sampled (never re-tokenised), and only the
messages the agent added since, rendered on their own. So the last turn's context is the whole rollout,
and the tokens the model did not write (observations, the final-round message, image tokens, a closing
end-of-turn after a reply cut at the token cap) are exactly those outside the completions.

`training_sequence` rebuilds that sequence from the trajectory's recorded steps and checks the prefix
rule on the way; the trainer trains on what the trajectory file says, so a record is also a replayable
training example. `RolloutEngine` owns the model: turns of concurrent rollouts are batched into one
`generate` call in a worker thread while the event loop keeps running every rollout's tools.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from gensearcher.agent.trajectory import Trajectory
from gensearcher.errors import ContextLengthExceeded, GenSearcherError, PolicyError
from gensearcher.messages import Message
from gensearcher.policy.base import PolicyResponse, TokenUsage
from gensearcher.policy.transformers_local import encode_messages, eos_token_ids

# Rendered before the new messages so a template that treats the first message specially (a default
# system prompt) renders them as it would mid-conversation; the part up to its last end-of-turn is cut.
_ANCHOR = [Message(role="user", text="."), Message(role="assistant", text=".")]


class SequenceError(GenSearcherError):
    """A trajectory's recorded turns do not form one token sequence (a backend that re-renders history)."""


class TrainingSequence(BaseModel):
    """One rollout as the trainer sees it: the first prompt, then everything after it, with its loss mask."""

    prompt_ids: list[int] = Field(..., description="The first turn's context: system prompt and task.")
    completion_ids: list[int] = Field(..., description="Every token after the first prompt, in order.")
    mask: list[int] = Field(..., description="1 where the model sampled the token, 0 where the loop wrote it.")
    images: list[str] = Field(..., description="The image files whose tokens the sequence holds, in order.")

    @property
    def generated(self) -> int:
        return sum(self.mask)


def training_sequence(trajectory: Trajectory, *, vision_start_id: int | None) -> TrainingSequence:
    """The token sequence of a finished rollout; raises SequenceError if the turns are not one prefix chain.

    `vision_start_id` (the token that opens an image) counts the images the sequence holds: the
    trajectory's images in order, up to those the last turn's context reached.
    """
    steps = [step for step in trajectory.steps if step.prompt_token_ids is not None]
    if not steps or len(steps) != len(trajectory.steps):
        raise SequenceError("the trajectory has turns without token ids (not a training rollout)")
    first = list(steps[0].prompt_token_ids or [])
    full: list[int] = []
    mask: list[int] = []
    for number, step in enumerate(steps):
        prompt = step.prompt_token_ids or []
        if prompt[: len(full)] != full or len(prompt) < len(full):
            raise SequenceError(f"turn {number + 1}'s context does not extend the previous turn's")
        mask.extend([0] * (len(prompt) - len(full)))
        completion = step.completion_token_ids or []
        full = [*prompt, *completion]
        mask.extend([1] * len(completion))
    images = [image.path for message in trajectory.messages for image in message.images]
    return TrainingSequence(prompt_ids=first, completion_ids=full[len(first):], mask=mask[len(first):],
                            images=images[: full.count(vision_start_id)] if vision_start_id is not None else [])


@dataclass
class Sampling:
    """How each turn is sampled (the trainer's temperature and top_p; the per-turn token cap)."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int | None = None
    max_new_tokens: int = 4096
    seed: int | None = None


@dataclass
class _Request:
    ids: list[int]
    pixel_values: list[Any]
    grids: list[Any]
    max_new_tokens: int
    done: asyncio.Future[list[int]] = field(repr=False)


class RolloutEngine:
    """Generates turns with one in-memory model; concurrent rollouts' turns share `generate` calls.

    Args:
        model: the (unwrapped) model being trained.
        processor: its processor; every render and the training forward use the same one.
        sampling: temperature, top_p, per-turn cap.
        max_batch: most turns in one `generate` call (1: one at a time).
        batch_window_s: how long the first turn of a batch waits for others to join it.
    """

    def __init__(self, model: Any, processor: Any, sampling: Sampling, max_batch: int = 8, *,
                 batch_window_s: float = 0.02):
        self.model = model
        self.batch_window_s = batch_window_s
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.sampling = sampling
        self.max_batch = max_batch
        self.eos_ids = eos_token_ids(model, self.tokenizer)
        self.context_limit: int | None = getattr(model.config.get_text_config(), "max_position_embeddings", None)
        self.image_token_id = _token(self.tokenizer, "<|image_pad|>")
        self.observation_id = _token(self.tokenizer, "<tool_response>")
        # A sampled vision token would claim pixels that do not exist (TRL then drops every image of the batch).
        self.suppress = [t for t in (_token(self.tokenizer, name) for name in
                                     ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"))
                         if t is not None]
        self.first_prompts: dict[tuple[tuple[str, str], ...], list[int]] = {}
        self._anchor_head: list[int] | None = None
        self._queue: list[_Request] = []
        self._worker: asyncio.Task[None] | None = None
        self.calls = 0
        self.busy_s = 0.0

    def anchor_head(self) -> list[int]:
        """The ids of the anchor conversation up to its last end-of-turn (rendered once)."""
        if self._anchor_head is None:
            head = encode_messages(self.processor, _ANCHOR, add_generation_prompt=False)["input_ids"][0].tolist()
            self._anchor_head = head[: max(i for i, token in enumerate(head) if token in self.eos_ids) + 1]
        return self._anchor_head

    async def generate(self, ids: list[int], pixel_values: list[Any], grids: list[Any], max_new_tokens: int) -> list[int]:
        done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(ids, pixel_values, grids, max_new_tokens, done))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        # Turns of rollouts that are rendering right now arrive within milliseconds: wait that long for them
        # (a generate call costs far more), then take what has come. Requests that arrive while a batch runs
        # wait for the next one.
        deadline = time.monotonic() + self.batch_window_s
        while len(self._queue) < self.max_batch and time.monotonic() < deadline:  # noqa: ASYNC110 - a window
            await asyncio.sleep(self.batch_window_s / 10)
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
            try:
                outputs = await self._timed(batch)
            except Exception:  # noqa: BLE001 - one bad request must not fail its batch-mates: run each alone
                if len(batch) == 1:
                    self._fail(batch[0])
                    continue
                for request in batch:
                    try:
                        self._finish(request, (await self._timed([request]))[0])
                    except Exception:  # noqa: BLE001
                        self._fail(request)
                continue
            for request, output in zip(batch, outputs, strict=True):
                self._finish(request, output)

    async def _timed(self, batch: list[_Request]) -> list[list[int]]:
        started = time.monotonic()
        try:
            return await asyncio.to_thread(self._generate, batch)
        finally:
            self.calls += 1
            self.busy_s += time.monotonic() - started

    @staticmethod
    def _finish(request: _Request, output: list[int]) -> None:
        if not request.done.done():
            request.done.set_result(output)

    @staticmethod
    def _fail(request: _Request) -> None:
        exc = sys.exc_info()[1]
        if not request.done.done():
            request.done.set_exception(PolicyError(f"generation failed: {type(exc).__name__}: {exc}"))

    def _generate(self, batch: list[_Request]) -> list[list[int]]:
        import torch

        width = max(len(r.ids) for r in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r.ids)) + r.ids for r in batch])
        attention = torch.tensor([[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in batch])
        inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention}
        pixels = [p for r in batch for p in r.pixel_values]
        if pixels:
            inputs["pixel_values"] = torch.cat(pixels)
            inputs["image_grid_thw"] = torch.cat([g for r in batch for g in r.grids])
        if self.image_token_id is not None:
            inputs["mm_token_type_ids"] = (input_ids == self.image_token_id).long()
        device = next(self.model.parameters()).device
        inputs = {key: value.to(device) for key, value in inputs.items()}
        sampling = self.sampling
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed + self.calls)
        greedy = sampling.temperature <= 0
        with torch.no_grad():
            output = self.model.generate(
                **inputs, max_new_tokens=max(r.max_new_tokens for r in batch), do_sample=not greedy,
                temperature=None if greedy else sampling.temperature, top_p=None if greedy else sampling.top_p,
                top_k=sampling.top_k, suppress_tokens=self.suppress or None, pad_token_id=pad,
                eos_token_id=sorted(self.eos_ids), use_cache=True,
                # Each rank generates on its own (ZeRO-3 weights are gathered for the whole rollout phase):
                # ranks whose rollouts take different numbers of turns must not wait for each other.
                synced_gpus=False)
        results = []
        for row, request in zip(output[:, width:].tolist(), batch, strict=True):
            ids: list[int] = []
            for token in row[: request.max_new_tokens]:
                ids.append(token)
                if token in self.eos_ids:
                    break
            results.append(ids)
        return results


class RolloutPolicy:
    """The policy backend of one rollout: token-in/token-out over a shared `RolloutEngine`.

    Args:
        engine: the model.
        max_completion_tokens: the rollout's budget for everything after the first prompt (completions,
            observations, images); a turn that would pass it ends the rollout as context_exceeded.
    """

    def __init__(self, engine: RolloutEngine, *, max_completion_tokens: int):
        self.engine = engine
        self.max_completion_tokens = max_completion_tokens
        self._ids: list[int] = []
        self._first = 0
        self._seen = 0  # messages covered by _ids
        self._pixels: list[Any] = []
        self._grids: list[Any] = []

    def describe(self) -> dict[str, Any]:
        return {"backend": "grpo-rollout", "architecture": type(self.engine.model).__name__}

    async def aclose(self) -> None:
        return None

    async def complete(self, messages: Sequence[Message], *, max_tokens: int) -> PolicyResponse:
        started = time.monotonic()
        if not self._ids:
            rendered = await asyncio.to_thread(self._render, list(messages), anchor=False)
            self._first = len(rendered)
            self._ids = rendered
        else:
            if len(messages) <= self._seen or messages[self._seen].role != "assistant":
                raise PolicyError("the conversation does not continue the rollout's last turn")
            suffix = await asyncio.to_thread(self._render, list(messages[self._seen + 1:]), anchor=True)
            if self._ids[-1] != self._closing_token():  # the last reply was cut (cap, stop): close its turn
                suffix = [self._closing_token(), *suffix]
            self._ids = [*self._ids, *suffix]
        self._seen = len(messages)  # where the agent appends the reply
        left = self.max_completion_tokens - (len(self._ids) - self._first)
        if left <= 0:
            raise ContextLengthExceeded(f"the rollout used its {self.max_completion_tokens}-token completion budget")
        budget = min(max_tokens, left)
        limit = self.engine.context_limit
        if limit is not None and len(self._ids) + 1 > limit:
            raise ContextLengthExceeded(f"the rollout's context of {len(self._ids)} tokens exceeds the model's {limit}")
        if limit is not None:
            budget = min(budget, limit - len(self._ids))
        completion = await self.engine.generate(list(self._ids), list(self._pixels), list(self._grids), budget)
        completion, forged = self._cut_forged_observation(completion)
        finished = forged or (bool(completion) and completion[-1] in self.engine.eos_ids)
        if completion and completion[-1] in self.engine.eos_ids and completion[-1] != self._closing_token():
            # Another end token (Qwen3-VL also stops on <|endoftext|>): inference re-renders the turn closed
            # by <|im_end|>, so the loop closes it the same way, with a token the model did not write.
            completion = completion[:-1]
        prompt = list(self._ids)
        self._ids = [*self._ids, *completion]
        return PolicyResponse(
            text=self.engine.tokenizer.decode(completion, skip_special_tokens=True),
            finish_reason="stop" if finished else "length",
            usage=TokenUsage(prompt_tokens=len(prompt), completion_tokens=len(completion)),
            prompt_token_ids=prompt, completion_token_ids=completion, latency_s=time.monotonic() - started,
        )

    def _cut_forged_observation(self, completion: list[int]) -> tuple[list[int], bool]:
        """The turn up to a tool response the model started writing itself, as a stop token ends it.

        The agent keeps only the text before it (`strip_hallucinated_observation`, trailing blanks too);
        the tokens must match, or every later turn would be sampled and trained after a forged
        observation that inference never shows. Dropping a tail leaves the kept tokens' log-probs as
        sampled, and the loop closes the cut turn with a token the model did not write."""
        marker = self.engine.observation_id
        if marker is None or marker not in completion:
            return completion, False
        kept = completion[: completion.index(marker)]
        while kept and not self.engine.tokenizer.decode(kept[-1:]).strip():
            kept.pop()
        return kept, True

    def _render(self, messages: list[Message], *, anchor: bool) -> list[int]:
        """Token ids of `messages` (as a continuation when `anchor`), keeping their images' pixel inputs.
        A render the processor refuses ends this rollout as a policy error, never its batch-mates."""
        try:
            return self._encode(messages, anchor=anchor)
        except PolicyError:
            raise
        except Exception as exc:  # a processor error must not escape Agent.run
            raise PolicyError(f"rendering the conversation failed: {type(exc).__name__}: {exc}") from exc

    def _encode(self, messages: list[Message], *, anchor: bool) -> list[int]:
        engine = self.engine
        key = tuple((m.role, m.text) for m in messages) if not anchor and not any(m.images for m in messages) else None
        if key is not None and key in engine.first_prompts:  # the other rollouts of the group start alike
            return list(engine.first_prompts[key])
        if not anchor:
            encoded = encode_messages(engine.processor, messages, add_generation_prompt=True)
            ids = encoded["input_ids"][0].tolist()
        else:
            head = engine.anchor_head()
            encoded = encode_messages(engine.processor, [*_ANCHOR, *messages], add_generation_prompt=True)
            ids = encoded["input_ids"][0].tolist()
            if ids[: len(head)] != head:
                raise PolicyError("the chat template does not render a conversation as a prefix of its continuation")
            ids = ids[len(head):]
        if "pixel_values" in encoded:
            self._pixels.append(encoded["pixel_values"])
            self._grids.append(encoded["image_grid_thw"])
        if key is not None:
            engine.first_prompts[key] = list(ids)
        return ids

    def _closing_token(self) -> int:
        token = self.engine.tokenizer.convert_tokens_to_ids("<|im_end|>")
        return int(token) if isinstance(token, int) else sorted(self.engine.eos_ids)[0]


def _token(tokenizer: Any, name: str) -> int | None:
    token = tokenizer.convert_tokens_to_ids(name)
    return token if isinstance(token, int) and token != tokenizer.unk_token_id else None


def load_images(paths: list[str]) -> list[Any]:
    """The image files of a sequence as the processor takes them (RGB), in order."""
    from PIL import Image

    images = []
    for path in paths:
        with Image.open(Path(path)) as opened:
            images.append(opened.convert("RGB"))
    return images
