"""The record of one research run: every message as the policy saw it, every step, the answer.

A trajectory is the only record of a run. The batch runner writes it as JSON (after every round, so a
killed run resumes from its last round); the training code turns it into SFT data or GRPO rollouts
(per-turn token ids are kept when the backend returns them); the viewer shows it.

Files: image paths inside a stored trajectory are relative to its run folder (the folder that holds
`trajectories/`, or the trajectory file's own folder for a single run), so a run folder can be moved or
copied to another machine and still open. `save_trajectory` and `load_trajectory` do the conversion;
in memory, paths are absolute. `schema_version` says which layout a file has (1: absolute paths, before
versioning).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from gensearcher._files import write_atomic
from gensearcher.data.records import ReferenceImage, SeenImage, Task
from gensearcher.messages import ImageRef, Message
from gensearcher.policy.base import TokenUsage

SCHEMA_VERSION = 2
TRAJECTORY_DIR = "trajectories"

Termination = Literal[
    "answer",  # a valid answer
    "answer_invalid",  # the last possible answer failed validation
    "no_answer",  # the budget ran out without an answer
    "repeated_response",  # the model repeated its previous turn word for word
    "context_exceeded",  # the conversation outgrew the context guard or the model's window
    "error",  # the policy failed (infrastructure); the batch can retry the item
]


class Answer(BaseModel):
    """A validated answer: the grounded prompt and the references it cites, enriched from the registry."""

    gen_prompt: str = Field(..., description="The generation prompt, references named by ordinal.")
    reference_images: list[ReferenceImage] = Field([], description="Sorted by IMG id, de-duplicated.")
    reordered: bool = Field(False, description="The model's list was not in id order and was sorted.")
    duplicates_removed: int = Field(0, description="Repeated ids the model cited, removed.")


class ToolCallRecord(BaseModel):
    """One tool call as it ran: the arguments, the observation the model was shown, what it cost."""

    name: str = Field(..., description="The tool (search, image_search, browse).")
    arguments: Any = Field(..., description="The arguments as the model wrote them.")
    arguments_run: dict[str, Any] | None = Field(
        None, description="The arguments as validated and run (defaults filled in); None when they were refused.")
    normalised: list[str] = Field(
        [], description="Reference-executor spellings mapped onto the schema (e.g. 'goal: read as query').")
    result_text: str = Field(..., description="The observation text shown to the model.")
    error: str | None = Field(None, description="The tool's error, if it failed (also in result_text).")
    duration_s: float = Field(..., description="Wall time of the call.")
    image_ids: list[str] = Field([], description="IMG ids of the images this call returned.")
    cache_keys: list[str] = Field([], description="Web-cache keys used (for `cache export --run`).")
    outage: bool = Field(False, description="A service the call depends on failed (search API down after retries, "
                                            "a replay cache miss, the browse summariser down), not the model's "
                                            "doing; training excludes such a rollout.")


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
    """One research run, complete or checkpointed (`termination` is None while it is still running).

    `messages` are the source of truth for what the policy saw (training data is rendered from them);
    `steps` annotate them round by round.
    """

    schema_version: int = Field(1, description="File layout: 2 = paths relative to the run folder.")
    task: Task = Field(..., description="The request, as given.")
    messages: list[Message] = Field(..., description="Every message, exactly as the policy saw it.")
    steps: list[Step] = Field([], description="One per policy turn, in order.")
    images: list[SeenImage] = Field([], description="Every image the trajectory registered, by IMG id.")
    answer: Answer | None = Field(None, description="The validated answer, if any.")
    termination: Termination | None = Field(..., description="How it ended; None in a checkpoint of a run in flight.")
    error: str | None = Field(None, description="Infrastructure failure message (termination 'error').")
    rounds: int = Field(0, description="Policy turns taken.")
    usage: TokenUsage = Field(TokenUsage(), description="Token counts summed over the turns.")
    started_at: str = Field(..., description="ISO time the run started.")
    duration_s: float = Field(0.0, description="Wall time of the run (summed over resumed pieces).")
    policy_s: float = Field(0.0, description="Time spent waiting for the policy.")
    tools_s: float = Field(0.0, description="Time spent in tools.")
    config: dict[str, Any] = Field({}, description="The masked configuration the run used.")
    versions: dict[str, Any] = Field({}, description="gensearcher, Python and policy versions.")

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        return [step.tool_call for step in self.steps if step.tool_call is not None]


def run_folder_of(path: Path) -> Path:
    """The run folder a trajectory file belongs to: the folder above `trajectories/`, else its own folder."""
    folder = path.resolve().parent
    return folder.parent if folder.name == TRAJECTORY_DIR else folder


def _rebase(trajectory: Trajectory, convert: Any) -> Trajectory:
    """A copy with every stored image path passed through `convert` (str -> str)."""
    data = trajectory.model_copy(deep=True)
    for message in data.messages:
        message.images = [ImageRef(path=convert(image.path), sha256=image.sha256, width=image.width,
                                   height=image.height) for image in message.images]
    for image in data.images:
        image.local_path = convert(image.local_path) if image.local_path else image.local_path
    if data.answer is not None:
        for ref in data.answer.reference_images:
            ref.local_path = convert(ref.local_path) if ref.local_path else ref.local_path
    return data


def save_trajectory(trajectory: Trajectory, path: Path, *, fsync: bool = True) -> None:
    """Write `trajectory` atomically, image paths inside its run folder stored relative to it."""
    root = run_folder_of(path)

    def relative(value: str) -> str:
        target = Path(value)
        if not target.is_absolute():
            return value
        try:
            return target.resolve().relative_to(root).as_posix()
        except ValueError:  # outside the run folder (e.g. a shared image store): stays absolute
            return value

    stored = _rebase(trajectory, relative)
    stored.schema_version = SCHEMA_VERSION
    write_atomic(path, stored.model_dump_json(indent=1).encode("utf-8"), fsync=fsync)


def load_trajectory(path: Path) -> Trajectory:
    """Read a trajectory file (either layout) with its image paths absolute again.

    Raises `pydantic.ValidationError` for a file that is not a trajectory, OSError if unreadable.
    """
    trajectory = Trajectory.model_validate_json(path.read_bytes())
    if trajectory.schema_version < 2:
        return trajectory
    root = run_folder_of(path)
    return _rebase(trajectory, lambda value: value if os.path.isabs(value) else str(root / value))
