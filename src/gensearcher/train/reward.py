"""The RL reward: one rollout's answer rendered by the generator and judged against the ground truth.

    scored          reward = (1 - c) * K + c * text, not below 0, with c = judge.text_coef; K alone when c = 0
    policy_failure  the model's doing (no valid answer, an empty gen_prompt, a reference count outside
                    [reward.min_input_images, reward.max_input_images]): reward 0, nothing is called
    excluded        the world's doing (no ground truth, an empty task prompt, the policy backend or a tool
                    down, the generator or the judge down after its retries or past its deadline): reward
                    None, so the trainer leaves the rollout out of the loss and of its group's statistics

The checks run in that order: ground truth and prompt, outages, the policy's gates, then one generation,
then the KnowGen judge on the original task prompt (and the text judge, concurrently). A reward never
raises for a model, generator or judge problem, and its record never holds a configured secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from gensearcher._concurrency import gather_or_cancel
from gensearcher._redact import Redactor
from gensearcher.agent.trajectory import Answer, Trajectory
from gensearcher.config import Settings
from gensearcher.data import ReferenceImage, Task
from gensearcher.errors import GenerationError
from gensearcher.generate import Generator, answer_request
from gensearcher.judge import Judge, JudgeError, JudgeScore

__all__ = ["RewardRecord", "Rewarder", "blend", "image_name"]

Status = Literal["scored", "policy_failure", "excluded"]


class RewardRecord(BaseModel):
    """The reward of one rollout and everything that went into it."""

    status: Status = Field(description="scored; policy_failure (reward 0, the model's fault); excluded (reward None: "
                                       "an infrastructure failure, left out of the loss and the group statistics).")
    reward: float | None = Field(description="The reward; None exactly when the rollout is excluded.")
    reason: str | None = Field(None, description=(
        "Why it was not scored (None when scored). policy_failure: the termination (no_answer, answer_invalid, "
        "repeated_response, context_exceeded), empty_gen_prompt, reference_count. excluded: missing_ground_truth, "
        "empty_prompt, policy_backend, tool_outage, unfinished, generator_failed, judge_failed, "
        "internal_error (a crash in gensearcher itself: never retried)."))
    detail: str | None = Field(None, description="A readable account of the reason (secrets redacted).")
    image_score: float | None = Field(None, description="The generated image's KnowGen K score (0-1, 2 decimals).")
    text_score: float | None = Field(None, description="The text judge's score (when text_coef > 0).")
    text_coef: float = Field(description="The weight c of the text score in the reward (judge.text_coef).")
    judge_scores: dict[str, float] = Field({}, description="The KnowGen dimensions as read (clipped, 2 decimals).")
    text_accuracy_na: bool = Field(False, description="The KnowGen judge found no required text (t counted 0.5).")
    rationale: str = Field("", description="The KnowGen judge's rationale (secrets redacted).")
    text_rationale: str = Field("", description="The text judge's rationale (secrets redacted).")
    generated_image: str | None = Field(None, description="Absolute path of the generated image.")
    gen_prompt: str | None = Field(None, description="The answer's prompt, as sent to the generator.")
    reference_images: list[str] = Field([], description="The reference files sent to the generator, in order.")
    generation_s: float = Field(0.0, description="Time of the generation, retries included.")
    judge_s: float = Field(0.0, description="Time of the judging (both judges), retries included.")


def blend(image: float, text: float, coef: float) -> float:
    """(1 - c) * image + c * text, c clamped to [0, 1], not below 0 (with c = 0: the image score)."""
    c = min(1.0, max(0.0, coef))
    return max(0.0, (1.0 - c) * image + c * text)


def image_name(name: str) -> str:
    """A file stem for a rollout name: safe characters only, and a hash of the name when it had to change,
    so two names never share a file."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip("._")[:120] or "rollout"
    return safe if safe == name else f"{safe}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:10]}"


class Rewarder:
    """Scores rollouts with one generator and one judge (both belong to the caller, who closes them).

    Args:
        settings: `reward` (the reference-count gate), `judge` (text_coef, deadline_s), `generator`
            (request defaults, timeout_s); every secret in it is redacted from the records.
        image_dir: where the generated images go, as `<name>.png`.
    """

    def __init__(self, settings: Settings, *, generator: Generator, judge: Judge, image_dir: Path):
        self.settings = settings
        self.generator = generator
        self.judge = judge
        self.image_dir = image_dir.resolve()
        self._redact = Redactor.from_settings(settings)

    async def score(self, task: Task, trajectory: Trajectory, *, name: str) -> RewardRecord:
        """The reward of one rollout. Never raises for model, generator or judge problems. `name` is unique
        per rollout (e.g. 'step3-t7-r2'); the image is saved as `image_dir/<name>.png` (see `image_name`)."""
        gated = self._gate(task, trajectory)
        if isinstance(gated, RewardRecord):
            return gated
        answer, references = gated
        request = answer_request(self.settings.generator, answer.gen_prompt, references)
        base: dict[str, Any] = {"gen_prompt": answer.gen_prompt, "reference_images": request.reference_images}
        path = self.image_dir / f"{image_name(name)}.png"
        started = time.monotonic()
        deadline = self.settings.generator.timeout_s
        try:
            async with asyncio.timeout(deadline):
                result = await self.generator.generate(request)
        except GenerationError as exc:
            return self._excluded("generator_failed", str(exc), **base, generation_s=_since(started))
        except TimeoutError:
            return self._excluded("generator_failed", f"no image within {deadline:g} s", **base,
                                  generation_s=_since(started))
        await asyncio.to_thread(result.save, path)
        base.update(generated_image=str(path), generation_s=_since(started))

        ground_truth = Path(str(task.gt_image))
        coef = self.settings.judge.text_coef
        calls = [self.judge.knowgen(task.id, task.prompt, path, ground_truth)]
        if coef > 0:
            refs = [ref.model_dump() for ref in answer.reference_images]
            calls.append(self.judge.text_reward(task.prompt, answer.gen_prompt, refs, ground_truth))
        started = time.monotonic()
        deadline = self.settings.judge.deadline_s
        try:
            async with asyncio.timeout(deadline):
                scores: list[JudgeScore] = await gather_or_cancel(calls)
        except JudgeError as exc:
            return self._excluded("judge_failed", str(exc), **base, judge_s=_since(started))
        except TimeoutError:
            return self._excluded("judge_failed", f"no judgement within {deadline:g} s", **base, judge_s=_since(started))
        image = scores[0]
        text = scores[1] if coef > 0 else None
        reward = blend(image.overall, text.overall if text else 0.0, coef)
        return RewardRecord(status="scored", reward=reward, text_coef=coef, image_score=image.overall,
                            text_score=text.overall if text else None, judge_scores=dict(image.scores),
                            text_accuracy_na=image.text_accuracy_na, rationale=self._redact(image.rationale),
                            text_rationale=self._redact(text.rationale) if text else "", judge_s=_since(started),
                            **base)

    def _gate(self, task: Task, trajectory: Trajectory) -> RewardRecord | tuple[Answer, list[ReferenceImage]]:
        """Everything decided without a call: the exclusions first, then the policy's failures."""
        if not task.gt_image or not Path(task.gt_image).is_file():
            return self._excluded("missing_ground_truth", f"the ground-truth image is not a file: {task.gt_image}")
        if not task.prompt.strip():
            return self._excluded("empty_prompt", "the task has no prompt")
        if trajectory.termination == "error":
            return self._excluded("policy_backend", trajectory.error or "the policy backend failed")
        outage = next((call for call in trajectory.tool_calls if call.outage), None)
        if outage is not None:
            return self._excluded("tool_outage", f"{outage.name}: {outage.error or 'the service was down'}")
        if trajectory.termination is None:
            return self._excluded("unfinished", "the rollout has no termination (it did not finish)")
        answer = trajectory.answer
        if trajectory.termination != "answer" or answer is None:
            reason = "no_answer" if trajectory.termination == "answer" else trajectory.termination
            return self._failure(reason, f"the research ended without a valid answer ({reason})")
        if not answer.gen_prompt.strip():
            return self._failure("empty_gen_prompt", "the answer's gen_prompt is empty", gen_prompt=answer.gen_prompt)
        references = [ref for ref in answer.reference_images if ref.local_path and Path(ref.local_path).is_file()]
        low, high = self.settings.reward.min_input_images, self.settings.reward.max_input_images
        if not low <= len(references) <= high:
            return self._failure("reference_count", f"{len(references)} of the answer's {len(answer.reference_images)} "
                                 f"reference images are on disk; the reward takes {low} to {high}",
                                 gen_prompt=answer.gen_prompt)
        return answer, references

    def _excluded(self, reason: str, detail: str, **fields: Any) -> RewardRecord:
        return RewardRecord(status="excluded", reward=None, reason=reason, detail=self._redact(detail),
                            text_coef=self.settings.judge.text_coef, **fields)

    def _failure(self, reason: str, detail: str, **fields: Any) -> RewardRecord:
        return RewardRecord(status="policy_failure", reward=0.0, reason=reason, detail=self._redact(detail),
                            text_coef=self.settings.judge.text_coef, **fields)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
