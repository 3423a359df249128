"""The VLM judge: KnowGen, WISE (legacy and verified), and the text-only judge of the RL reward.

Any OpenAI-compatible vision model, at temperature 0, through the same chat client as the policy
(retries with backoff on 429/5xx, a total deadline). Calls are bounded by a semaphore and cached by
(model, rubric, request, image hashes): the same inputs are never judged twice, which also makes an
interrupted evaluation resume without repeating a call. Answers are parsed leniently; KnowGen scores are
read as the reference evaluator reads them (clipped, not snapped), and the raw answer is kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from gensearcher._redact import redact
from gensearcher.agent.protocol import loads_lenient
from gensearcher.config import JudgeConfig, PolicyConfig
from gensearcher.data.records import text_not_applicable
from gensearcher.errors import GenSearcherError, PolicyError, UserError
from gensearcher.images import prepare_for_policy, sha256_file
from gensearcher.messages import ImageRef, Message
from gensearcher.web import WebCache

Kind = Literal["knowgen", "wise-legacy", "wise-verified", "text"]
KNOWGEN_DIMENSIONS = ("faithfulness", "visual_correctness", "text_accuracy", "aesthetics")


class JudgeError(GenSearcherError):
    """The judge could not produce a usable judgement (after retries). `raw` keeps its last answer."""

    def __init__(self, message: str, raw: str = ""):
        super().__init__(message)
        self.raw = raw


class JudgeScore(BaseModel):
    kind: Kind
    scores: dict[str, float]
    overall: float
    rationale: str = ""
    text_accuracy_na: bool = False
    raw: str = ""


def default_rubric(kind: Kind) -> str:
    name = {"knowgen": "knowgen", "wise-legacy": "wise_legacy", "wise-verified": "wise_verified", "text": "text_reward"}[kind]
    return resources.files("gensearcher.judge").joinpath(f"rubrics/{name}.md").read_text(encoding="utf-8")


def snap(value: Any, allowed: tuple[float, ...]) -> float:
    """The allowed value nearest to `value` (ties go to the lower one). Raises ValueError if not a number."""
    number = float(value)
    return min(allowed, key=lambda option: (abs(option - number), option))


def knowgen_overall(f: float, v: float, t: float, a: float, *, text_na: bool) -> float:
    """The per-item K score: 0.1 f + 0.4 v + 0.4 t + 0.1 a, with t = 0.5 when text is not applicable."""
    return 0.1 * f + 0.4 * v + 0.4 * (0.5 if text_na else t) + 0.1 * a


def clip_score(value: Any) -> float:
    """A KnowGen dimension as the reference evaluator reads it: a number clipped to [0, 1], 2 decimals.

    Judges write 0.75, 0.7 or 1.2 as freely as 0, 0.5 and 1; the reference keeps those values (it does
    not snap them), so ours does too. Raises ValueError for what is not a number.
    """
    number = float(value)
    if number != number:  # NaN
        raise ValueError("a score is not a number")
    return round(min(1.0, max(0.0, number)), 2)


def parse_judgement(kind: Kind, raw: str) -> JudgeScore:
    """A judge answer as scores. Raises ValueError with the reason when it is not usable.

    KnowGen follows the reference evaluator exactly: each dimension clipped and rounded (`clip_score`), a
    missing dimension counts 0, `text_accuracy_na` makes text accuracy 0.5, and the item's overall is
    rounded to 2 decimals. WISE and the text reward snap to their allowed values, as their references do.
    """
    data = loads_lenient(raw)
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    rationale = str(data.get("rationale", ""))[:1000]
    if kind == "knowgen":
        try:
            scores = {key: clip_score(data[key]) if key in data else 0.0 for key in KNOWGEN_DIMENSIONS}
        except (TypeError, ValueError, OverflowError):
            raise ValueError("a score is not a number") from None
        na = text_not_applicable(data.get("text_accuracy_na", False))
        if na:
            scores["text_accuracy"] = 0.5
        overall = min(1.0, max(0.0, round(knowgen_overall(*(scores[k] for k in KNOWGEN_DIMENSIONS), text_na=na), 2)))
        return JudgeScore(kind=kind, scores=scores, overall=overall, rationale=rationale, text_accuracy_na=na, raw=raw)
    if kind == "wise-legacy":
        keys = {"consistency": ("consistency",), "realism": ("realism",), "aesthetic_quality": ("aesthetic_quality", "aesthetic")}
        scores = {}
        for name, spellings in keys.items():
            value = next((data[s] for s in spellings if s in data), None)
            if value is None:
                raise ValueError(f"missing score: {name}")
            scores[name] = snap(value, (0.0, 1.0, 2.0))
        wiscore = (0.7 * scores["consistency"] + 0.2 * scores["realism"] + 0.1 * scores["aesthetic_quality"]) / 2
        return JudgeScore(kind=kind, scores=scores, overall=round(wiscore, 4), rationale=rationale, raw=raw)
    if "score" not in data:
        raise ValueError("missing score")
    allowed = (0.0, 1.0) if kind == "wise-verified" else (0.0, 0.25, 0.5, 0.75, 1.0)
    score = snap(data["score"], allowed)
    return JudgeScore(kind=kind, scores={"score": score}, overall=score, rationale=rationale, raw=raw)


class Judge:
    """Args:
        config: endpoint, model, limits.
        cache: where judgements are kept (None: no cache).
        image_dir: where the capped copies of the judged images go.
        rubrics: replacements for our rubrics, by kind (e.g. the original, read from the user's copy).
    """

    def __init__(self, config: JudgeConfig, *, cache: WebCache | None, image_dir: Path,
                 rubrics: dict[str, str] | None = None):
        from gensearcher.policy.openai_chat import OpenAIChatPolicy

        policy = PolicyConfig(base_url=config.base_url, model=config.model, api_key=config.api_key, temperature=0.0,
                              top_p=1.0, request_timeout_s=config.request_timeout_s, deadline_s=config.deadline_s,
                              max_retries=config.max_retries, max_pixels=config.image_pixels)
        self.config = config
        self.client = OpenAIChatPolicy(policy, max_connections=config.concurrency)
        self.cache = cache
        self.image_dir = image_dir
        self.rubrics = rubrics or {}
        self._limit = asyncio.Semaphore(config.concurrency)
        self.calls = 0
        self.cache_hits = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.seconds = 0.0
        self._prepared: dict[str, ImageRef] = {}  # by the sha256 of the source file

    def rubric(self, kind: Kind) -> str:
        return self.rubrics.get(kind) or default_rubric(kind)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def knowgen(self, item_id: Any, prompt: str, generated: Path, ground_truth: Path) -> JudgeScore:
        text = (f"Item {item_id}.\nRequest: {prompt}\nImage 1 is the generated picture. Image 2 is the ground-truth "
                "picture.\nReturn the JSON object with the four scores and the rationale.")
        return await self._judge("knowgen", text, [generated, ground_truth])

    async def wise(self, version: Literal["legacy", "verified"], prompt: str, explanation: str, generated: Path) -> JudgeScore:
        text = f"Request: {prompt}\nJudging guide: {explanation}\nThe picture is attached. Return the JSON object."
        return await self._judge("wise-legacy" if version == "legacy" else "wise-verified", text, [generated])

    async def text_reward(self, prompt: str, gen_prompt: str, references: list[dict[str, Any]], ground_truth: Path) -> JudgeScore:
        answer = json.dumps({"gen_prompt": gen_prompt, "reference_images": [
            {key: ref.get(key) for key in ("img_id", "title", "note", "page_url")} for ref in references]}, ensure_ascii=False)
        text = f"Request: {prompt}\nResearch output: {answer}\nThe ground-truth picture is attached. Return the JSON object."
        return await self._judge("text", text, [ground_truth])

    async def _judge(self, kind: Kind, text: str, images: list[Path]) -> JudgeScore:
        for path in images:
            if not path.is_file():
                raise JudgeError(f"image not found: {path}")
        refs = await asyncio.gather(*(self._prepare(path) for path in images))
        system = self.rubric(kind)
        messages = [Message(role="system", text=system), Message(role="user", text=text, images=list(refs))]
        request = {"kind": kind, "model": self.config.model, "rubric": hashlib.sha256(system.encode()).hexdigest(),
                   "text": text, "images": [ref.sha256 for ref in refs]}
        raw = ""
        for attempt in range(self.config.parse_retries + 1):
            raw, cached = await self._answer(messages, request, fresh=attempt > 0)
            try:
                score = parse_judgement(kind, raw)
            except ValueError as exc:
                problem = str(exc)
                continue
            if self.cache is not None and not cached:
                self.cache.store(_key(request), "judge", request, raw.encode("utf-8"), {"model": self.config.model})
            return score
        # The answer is kept for the record; a key the endpoint echoed into it is not.
        raise JudgeError(f"the judge's answer could not be used ({problem})", redact(raw, [self.config.api_key]))

    async def _answer(self, messages: list[Message], request: dict[str, Any], *, fresh: bool) -> tuple[str, bool]:
        if self.cache is not None and not fresh:
            found = self.cache.lookup(_key(request))
            if found is not None:
                self.cache_hits += 1
                return found.body.decode("utf-8"), True
        async with self._limit:
            started = time.monotonic()
            try:
                response = await self.client.complete(messages, max_tokens=self.config.max_tokens)
            except PolicyError as exc:
                raise JudgeError(f"the judge endpoint failed: {redact(str(exc), [self.config.api_key])}") from None
            finally:
                self.seconds += time.monotonic() - started
        self.calls += 1
        self.prompt_tokens += response.usage.prompt_tokens
        self.completion_tokens += response.usage.completion_tokens
        return response.text, False

    async def _prepare(self, path: Path) -> ImageRef:
        """The capped copy the judge is sent; a picture judged again (a ground truth, once per rollout) is
        prepared once. Keyed by the file's bytes, not its name and mtime: a retried rollout's image is
        saved again under its name, within the same timestamp tick and often at the same size."""
        try:
            digest = await asyncio.to_thread(sha256_file, path)
        except OSError as exc:  # removed or unreadable since the check in _judge
            raise JudgeError(f"cannot read image {path}: {exc.strerror or exc}") from None
        if digest not in self._prepared:
            self._prepared[digest] = await asyncio.to_thread(prepare_for_policy, path, self.image_dir,
                                                             self.config.image_pixels)
        return self._prepared[digest]

    def costs(self) -> dict[str, Any]:
        return {"calls": self.calls, "cache_hits": self.cache_hits, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "seconds_in_calls": round(self.seconds, 2)}


def _key(request: dict[str, Any]) -> str:
    from gensearcher.web.cache import cache_key

    return cache_key("judge", request)


def load_rubric_file(path: Path | None) -> str | None:
    if path is None:
        return None
    if not path.is_file():
        raise UserError(f"rubric file not found: {path}")
    return path.read_text(encoding="utf-8")
