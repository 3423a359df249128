"""The research agent: one async loop over policy turns and tool calls.

Each round the policy writes one turn; the turn is a tool call (run it, show the result), an answer
(validate it; done if valid) or unusable (say why). Every problem the model can fix becomes an
observation and the loop goes on while budget remains. After `max_llm_calls` rounds without an answer, a
final round asks for the answer alone. The loop does not know about the CLI or files other than images:
the batch runner and the GRPO trainer drive the same `Agent.run`.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import platform
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gensearcher import __version__
from gensearcher.agent import prompts
from gensearcher.agent.answer import validate_answer
from gensearcher.agent.protocol import (
    AnswerTurn,
    InvalidTurn,
    ToolCallTurn,
    Turn,
    parse_turn,
    strip_hallucinated_observation,
)
from gensearcher.agent.registry import ImageRegistry
from gensearcher.agent.trajectory import Answer, Step, Termination, ToolCallRecord, Trajectory
from gensearcher.config import AgentConfig
from gensearcher.data.records import Task
from gensearcher.errors import ContextLengthExceeded, PolicyError, ToolError
from gensearcher.images import prepare_for_policy
from gensearcher.messages import ImageRef, Message
from gensearcher.policy.base import PolicyBackend, PolicyResponse, TokenUsage
from gensearcher.tools.base import Toolbox, ToolCallOutcome

logger = logging.getLogger(__name__)

# Replies longer than this are parsed in a worker thread, so other trajectories keep running.
_PARSE_INLINE_CHARS = 2_000
# Context-guard estimate: ~3 characters per text token, one token per 28x28 pixels of image (Qwen-VL).
_CHARS_PER_TOKEN = 3
_PIXELS_PER_TOKEN = 28 * 28


@dataclass
class _Run:
    """The mutable state of one trajectory while it runs."""

    task: Task
    messages: list[Message]
    registry: ImageRegistry = field(default_factory=ImageRegistry)
    steps: list[Step] = field(default_factory=list)
    usage: TokenUsage = field(default_factory=TokenUsage)
    answer: Answer | None = None
    policy_s: float = 0.0
    tools_s: float = 0.0
    known_tokens: int = 0  # prompt + completion tokens of the last call, as the server counted them
    counted_messages: int = 0  # messages covered by known_tokens
    started_at: str = ""
    earlier_s: float = 0.0  # wall time of the pieces before a resume


class Agent:
    """A research agent: a policy, a toolbox and the rules of the loop.

    Args:
        policy: the backend that writes each turn.
        toolbox: the tools the policy may call.
        config: budgets (rounds, tokens, context) and tool deadlines.
        max_refs: the most reference images an answer may cite (shared with the generator).
        max_pixels: pixel cap of every image shown to the policy.
        image_dir: where the capped copies of those images are stored.
        system_template: a system prompt template (default: ours); see `gensearcher.agent.prompts`.
        framing: how fixed texts and observations reach the model (default: ours); `Framing(texts)` with
            the reference system's texts reproduces its setting exactly (and ignores `system_template`).
        record: extra data stored in every trajectory (the masked configuration).
    """

    def __init__(
        self,
        policy: PolicyBackend,
        toolbox: Toolbox,
        *,
        config: AgentConfig,
        max_refs: int,
        max_pixels: int,
        image_dir: Path,
        system_template: str | None = None,
        framing: prompts.Framing | None = None,
        record: dict[str, Any] | None = None,
    ):
        self.policy = policy
        self.toolbox = toolbox
        self.config = config
        self.max_refs = max_refs
        self.max_pixels = max_pixels
        self.image_dir = image_dir
        self.framing = framing or prompts.Framing()
        self.system_prompt = self.framing.system_prompt(
            system_template or prompts.default_system_template(),
            date=config.today(),
            tools=toolbox.schemas_json(),
            max_refs=max_refs,
            max_tool_calls=max(1, config.max_llm_calls - 1),
        )
        self.record = record or {}

    async def run(self, task: Task, *, resume: Trajectory | None = None,
                  checkpoint: Callable[[Trajectory], Awaitable[None]] | None = None) -> Trajectory:
        """Research one task. Never raises for model or tool problems; a policy failure ends as 'error'.

        Args:
            task: the request.
            resume: a checkpoint of this task (termination None) to go on from, after its last round.
            checkpoint: awaited with the trajectory so far after every round that did not end it, so a
                killed run loses at most the round in flight.
        """
        clock = time.monotonic()
        run = self._start(task, resume)
        termination: Termination | None = None
        error: str | None = None
        try:
            for round_no in range(len(run.steps) + 1, self.config.max_llm_calls + 1):
                termination = await self._round(run, round_no, final=False)
                if termination is not None:
                    break
                if checkpoint is not None:
                    await checkpoint(self._record(run, None, None, clock))
            else:
                run.messages.append(self.framing.final_round())
                termination = await self._round(run, self.config.max_llm_calls + 1, final=True)
        except ContextLengthExceeded as exc:
            termination, error = "context_exceeded", str(exc)
        except PolicyError as exc:
            termination, error = "error", str(exc)
        return self._record(run, termination or "no_answer", error, clock)

    def _start(self, task: Task, resume: Trajectory | None) -> _Run:
        if resume is None or resume.termination is not None or len(resume.steps) > self.config.max_llm_calls:
            return _Run(task=task, messages=[Message(role="system", text=self.system_prompt),
                                             Message(role="user", text=task.prompt)],
                        started_at=_dt.datetime.now(_dt.UTC).isoformat())
        messages = list(resume.messages)
        if messages and messages[-1].role == "user" and messages[-1].text == self.framing.final_round().text:
            messages.pop()  # interrupted in the final round: the loop asks again
        return _Run(task=task, messages=messages, registry=ImageRegistry.restore(resume.images),
                    steps=list(resume.steps), usage=resume.usage, policy_s=resume.policy_s, tools_s=resume.tools_s,
                    started_at=resume.started_at, earlier_s=resume.duration_s)

    def _record(self, run: _Run, termination: Termination | None, error: str | None, clock: float) -> Trajectory:
        # Built without re-validating: every part is already a validated model (this runs every round).
        return Trajectory.model_construct(
            task=run.task,
            messages=list(run.messages),
            steps=list(run.steps),
            images=run.registry.all(),
            answer=run.answer,
            termination=termination,
            error=error,
            rounds=len(run.steps),
            usage=run.usage,
            started_at=run.started_at,
            duration_s=run.earlier_s + time.monotonic() - clock,
            policy_s=run.policy_s,
            tools_s=run.tools_s,
            config=self.record,
            versions={"gensearcher": __version__, "python": platform.python_version(), "policy": self.policy.describe()},
        )

    async def _round(self, run: _Run, round_no: int, *, final: bool) -> Termination | None:
        """One policy turn and its consequence. Returns a termination, or None to go on.

        Whatever the reply holds, reading and acting on it cannot end the trajectory: an exception there
        (a parser or validator our bounds missed, a bug) becomes a tool error shown to the model.
        Only the policy's own failures (PolicyError, ContextLengthExceeded) end the run.
        """
        self._check_context(run)
        response = await self.policy.complete(run.messages, max_tokens=self.config.max_new_tokens_per_turn)
        self._account(run, response)
        text = strip_hallucinated_observation(response.text)
        previous = next((m.text for m in reversed(run.messages) if m.role == "assistant"), None)
        run.messages.append(Message(role="assistant", text=text))
        try:
            if len(text) > _PARSE_INLINE_CHARS:  # JSON5 on a hostile body can take a second of CPU
                turn: Turn = await asyncio.to_thread(parse_turn, text, final_round=final)
            else:
                turn = parse_turn(text, final_round=final)
        except Exception as exc:  # noqa: BLE001 - model output must never end the trajectory
            turn = InvalidTurn(problem=_unhandled(exc), where="tool_call")
        step = _new_step(round_no, final, text, response, turn.kind)
        run.steps.append(step)
        if text == previous:
            return "repeated_response"
        try:
            return await self._act(run, step, turn, response, final=final)
        except (PolicyError, ContextLengthExceeded):
            raise
        except Exception as exc:  # the last line: any other failure becomes an observation
            logger.warning("round %d: handling the reply raised %s", round_no, type(exc).__name__, exc_info=True)
            step.problem = _unhandled(exc)
            if final:
                return "answer_invalid" if isinstance(turn, AnswerTurn) else "no_answer"
            run.messages.append(self.framing.tool_error(step.problem))
            return None

    async def _act(self, run: _Run, step: Step, turn: Turn, response: PolicyResponse, *,
                   final: bool) -> Termination | None:
        if isinstance(turn, AnswerTurn):
            checked = validate_answer(turn.payload, run.registry, max_refs=self.max_refs)
            if isinstance(checked, Answer):
                run.answer = checked
                return "answer"
            step.problem = "; ".join(checked)
            if final:
                return "answer_invalid"
            run.messages.append(self.framing.answer_rejected(step.problem))
            return None
        if final:
            step.problem = "no answer in the final round"
            return "no_answer"
        if isinstance(turn, InvalidTurn):
            step.problem = turn.problem
            truncated = response.finish_reason == "length"
            run.messages.append(self.framing.invalid_turn(turn.problem, where=turn.where, truncated=truncated))
            return None
        await self._call_tool(run, step, turn)
        return None

    async def _call_tool(self, run: _Run, step: Step, turn: ToolCallTurn) -> None:
        outcome = await self.toolbox.call(turn.name, turn.arguments)
        run.tools_s += outcome.duration_s
        text, images, image_ids = await self._present(run, turn, outcome)
        text += self.framing.ignored_calls_note(turn.ignored_calls)
        step.tool_call = ToolCallRecord(
            name=turn.name,
            arguments=turn.arguments,
            arguments_run=outcome.arguments or None,
            normalised=outcome.normalised,
            result_text=text,
            error=outcome.result.error,
            duration_s=outcome.duration_s,
            image_ids=image_ids,
            cache_keys=outcome.result.cache_keys,
            outage=outcome.result.outage,
        )
        self._observe(run, text, images)

    async def _present(self, run: _Run, turn: ToolCallTurn,
                       outcome: ToolCallOutcome) -> tuple[str, list[ImageRef], list[str]]:
        """The observation for a tool result. Image hits get IMG ids; the first few are attached."""
        result = outcome.result
        if turn.name != "image_search" or result.error:
            return result.text, [], []
        query = outcome.arguments.get("query", "")
        lines = [f"--- image search result for [{query}] ---"]
        attached: list[ImageRef] = []
        image_ids: list[str] = []
        for hit in result.images:
            image = run.registry.register(hit)
            image_ids.append(image.img_id)
            lines.append(f"{image.img_id}: title: {image.title or ''}")
            lines.append(f"  url: {image.url or ''}")
            lines.append(f"  local_path: {image.local_path}")
            if image.page_url:
                lines.append(f"  page_url: {image.page_url}")
            if len(attached) < self.config.max_images_per_search:
                try:
                    # Decoding and resizing are CPU work: off the loop that runs every other trajectory.
                    attached.append(await asyncio.to_thread(prepare_for_policy, Path(str(image.local_path)),
                                                            self.image_dir, self.max_pixels))
                except ToolError as exc:
                    lines.append(f"  (not attached: {exc})")
        if result.text:
            lines.append(result.text)
        lines.append("--- end of image search result ---")
        return "\n".join(lines), attached, image_ids

    def _observe(self, run: _Run, text: str, images: list[ImageRef] | None = None) -> None:
        run.messages.append(self.framing.tool_response(text, images))

    def _account(self, run: _Run, response: PolicyResponse) -> None:
        run.usage = run.usage + response.usage
        run.policy_s += response.latency_s
        if response.usage.prompt_tokens:
            run.known_tokens = response.usage.prompt_tokens + response.usage.completion_tokens
            run.counted_messages = len(run.messages) + 1  # the assistant turn about to be appended

    def _check_context(self, run: _Run) -> None:
        """Stop before a call whose prompt (estimated) plus its reply could not fit the context guard."""
        estimate = run.known_tokens + sum(_estimate_tokens(m) for m in run.messages[run.counted_messages :])
        limit = self.config.max_context_tokens
        if estimate + self.config.max_new_tokens_per_turn > limit:
            raise ContextLengthExceeded(f"the next prompt (~{estimate} tokens) plus a reply would pass the {limit}-token guard")


def _unhandled(exc: BaseException) -> str:
    """What the model is told when its reply raised: the kind of failure, never the (model-made) message."""
    return (f"the reply could not be handled ({type(exc).__name__}); write one short tool call or answer "
            "with plain JSON")


def _estimate_tokens(message: Message) -> int:
    pixels = sum(image.width * image.height for image in message.images)
    return len(message.text) // _CHARS_PER_TOKEN + pixels // _PIXELS_PER_TOKEN + 4


def _new_step(round_no: int, final: bool, text: str, response: PolicyResponse,
              action: Literal["tool_call", "answer", "invalid"]) -> Step:
    return Step(
        round=round_no,
        final_round=final,
        response=text,
        finish_reason=response.finish_reason,
        usage=response.usage,
        latency_s=response.latency_s,
        attempts=response.attempts,
        action=action,
        prompt_token_ids=response.prompt_token_ids,
        completion_token_ids=response.completion_token_ids,
        completion_logprobs=response.completion_logprobs,
    )
