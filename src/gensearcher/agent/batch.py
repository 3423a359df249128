"""Batch research: many tasks, concurrently, resumably.

Each item's trajectory is written as `trajectories/<name>.json` after every round (a checkpoint) and when
it ends. The trajectory files are the source of truth: `--resume` keeps every finished trajectory whose
task is unchanged, and goes on from the last round of one that was interrupted (or that ended in a
policy error), so no finished round is redone. `results.json` (the reference system's agent-output
format) is a view of them, rewritten at most about once a second and at the end, off the event loop. A
task that crashes is recorded as an error row and the batch goes on.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import logging
import re
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ValidationError

from gensearcher.agent.loop import Agent
from gensearcher.agent.trajectory import TRAJECTORY_DIR, Trajectory, load_trajectory, save_trajectory
from gensearcher.data import (
    ChatTurn,
    ResearchRow,
    Task,
    ThrottledWriter,
    json_array,
    read_tasks,
)
from gensearcher.data.io import dumps, run_batch
from gensearcher.errors import UserError

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
# The reference agent output caps each message's text and image list.
_MAX_CONTENT_CHARS = 50_000
_MAX_MESSAGE_IMAGES = 10
# Lower case only (macOS and Windows file systems ignore case), no trailing dot, no Windows device name.
_SAFE_NAME = re.compile(r"[a-z0-9_\-][a-z0-9_.\-]{0,78}[a-z0-9_\-]|[a-z0-9_\-]")
_DEVICE_NAMES = re.compile(r"(con|prn|aux|nul|com\d|lpt\d)(\..*)?")


def load_tasks(path: Path) -> list[Task]:
    """The tasks of a JSON or JSONL file (see `gensearcher.data.read_tasks`)."""
    return read_tasks(path)


def item_filename(item_id: int | str, suffix: str) -> str:
    """A safe file name for an item id, different for every different id.

    Ids made of lower-case letters, digits, `_`, `-` and `.` (not first or last) name their file as they
    are; any other id gets a readable slug plus a hash of the id after a `~`, a character safe ids never
    contain, so no two ids share a file (`t.1` and `t.2`, `a b` and `a_b`, `A` and `a` on a file system
    that ignores case).
    """
    raw = str(item_id)
    if _SAFE_NAME.fullmatch(raw) and not _DEVICE_NAMES.fullmatch(raw):
        return f"{raw}{suffix}"
    slug = re.sub(r"[^A-Za-z0-9_\-]+", "_", raw)[:60].strip("_") or "item"
    return f"{slug}~{hashlib.sha256(raw.encode()).hexdigest()[:16]}{suffix}"


def trajectory_filename(task_id: int | str) -> str:
    return item_filename(task_id, ".json")


def result_row(trajectory: Trajectory, trajectory_path: str | None, task: Task | None = None) -> ResearchRow:
    """One row of results.json, in the reference system's agent-output format (plus `trajectory`, `error`).

    `task` is the task as the input file gives it now (default: the trajectory's): a resumed run carries
    the current labels and ground truth, and every field of the task we do not know is kept.
    """
    task = task or trajectory.task
    answer = trajectory.answer
    known = set(ResearchRow.model_fields)
    return ResearchRow(
        **{key: value for key, value in (task.model_extra or {}).items() if key not in known},
        id=task.id,
        prompt=task.prompt,
        meta=task.meta,
        termination=trajectory.termination or "running",
        trajectory_messages=[
            ChatTurn(role=message.role, content=message.text[:_MAX_CONTENT_CHARS],
                     images=[image.path for image in message.images[:_MAX_MESSAGE_IMAGES]])
            for message in trajectory.messages
        ],
        gen_prompt=answer.gen_prompt if answer else "",
        reference_images=answer.reference_images if answer else [],
        gt_image=task.gt_image,
        trajectory=trajectory_path,
        error=trajectory.error,
    )


def run_cache_keys(run_dir: Path) -> list[str]:
    """Every web-cache key the trajectories of a research output folder used, in first-use order."""
    files = sorted((run_dir / TRAJECTORY_DIR).glob("*.json"))
    if (run_dir / "trajectory.json").is_file():
        files.append(run_dir / "trajectory.json")
    if not files:
        raise UserError(f"no trajectories in {run_dir}")
    keys: dict[str, None] = {}
    for path in files:
        trajectory = Trajectory.model_validate_json(path.read_bytes())
        for call in trajectory.tool_calls:
            keys.update(dict.fromkeys(call.cache_keys))
    return list(keys)


class BatchSummary(BaseModel):
    """What a batch did."""

    total: int
    skipped: int
    ran: int
    resumed: int = 0
    terminations: dict[str, int]
    results_path: str


class BatchRunner:
    """Run an `Agent` over many tasks with at most `concurrency` in flight.

    Args:
        agent: the agent (shared by all tasks: one policy client, one toolbox).
        out_dir: where results.json and trajectories/ go.
        concurrency: trajectories in flight at once.
        resume: keep finished trajectories in `out_dir` and go on from interrupted ones.
        on_item: called after each item with (row, finished count, total), e.g. for a progress bar.
    """

    def __init__(self, agent: Agent, out_dir: Path, *, concurrency: int = 8, resume: bool = False,
                 on_item: Callable[[ResearchRow, int, int], None] | None = None):
        if concurrency < 1:
            raise UserError("concurrency must be at least 1")
        self.agent = agent
        self.out_dir = out_dir
        self.concurrency = concurrency
        self.resume = resume
        self.on_item = on_item

    async def run(self, tasks: list[Task]) -> BatchSummary:
        results_path = self.out_dir / RESULTS_FILE
        if results_path.exists() and not self.resume:
            raise UserError(f"{results_path} exists: resume that run (--resume) or choose another output folder")
        if results_path.exists() and not (self.out_dir / TRAJECTORY_DIR).is_dir():
            # Resuming works from our trajectory files; without them every row would be researched again
            # and the file (perhaps the reference system's own output) overwritten.
            raise UserError(f"{results_path} has no {TRAJECTORY_DIR}/ beside it, so it is not a research run to "
                            "resume: choose another output folder")
        (self.out_dir / TRAJECTORY_DIR).mkdir(parents=True, exist_ok=True)
        writer = ThrottledWriter(results_path, [str(task.id) for task in tasks], json_array)
        terminations: dict[str, int] = {}
        todo: list[tuple[Task, Trajectory | None]] = []
        for task in tasks:
            previous = await asyncio.to_thread(self._previous, task) if self.resume else None
            if previous is not None and previous.termination not in (None, "error"):
                row = result_row(previous, self._relative(task), task)
                writer.put(str(task.id), dumps(row))
                terminations[row.termination] = terminations.get(row.termination, 0) + 1
            else:
                todo.append((task, previous))

        def count(row: ResearchRow) -> None:
            terminations[row.termination] = terminations.get(row.termination, 0) + 1

        async def work(entry: tuple[Task, Trajectory | None]) -> ResearchRow:
            return await self._research(*entry)

        await run_batch(todo, work, writer, concurrency=self.concurrency, record=count, on_item=self.on_item,
                        finished=len(tasks) - len(todo), total=len(tasks))
        return BatchSummary(total=len(tasks), skipped=len(tasks) - len(todo), ran=len(todo),
                            resumed=sum(1 for _, previous in todo if previous is not None),
                            terminations=terminations, results_path=str(results_path))

    def _relative(self, task: Task) -> str:
        return f"{TRAJECTORY_DIR}/{trajectory_filename(task.id)}"

    async def _research(self, task: Task, previous: Trajectory | None) -> ResearchRow:
        relative = self._relative(task)
        path = self.out_dir / relative

        async def checkpoint(partial: Trajectory) -> None:
            # Skipping fsync: the rename already survives a killed process, and the next round rewrites it.
            await asyncio.to_thread(save_trajectory, partial, path, fsync=False)

        resume = previous.model_copy(update={"termination": None, "error": None}) if previous else None
        try:
            trajectory = await self.agent.run(task, resume=resume, checkpoint=checkpoint)
        except Exception as exc:  # a bug must cost one item, not the batch
            logger.exception("task %r crashed", task.id)
            return result_row(crashed_trajectory(task, exc), None)
        # No fsync per item: the rename survives a killed process, and at 100,000 items the flushes would
        # cost more than the research bookkeeping itself; results.json is flushed at the end.
        await asyncio.to_thread(save_trajectory, trajectory, path, fsync=False)
        return result_row(trajectory, relative, task)

    def _previous(self, task: Task) -> Trajectory | None:
        """The stored trajectory of this task, if it is one (same id and prompt) that can be reused."""
        path = self.out_dir / self._relative(task)
        if not path.is_file():
            return None
        try:
            trajectory = load_trajectory(path)
        except (ValidationError, ValueError, OSError):
            logger.warning("ignoring unreadable trajectory %s; the task runs again", path)
            return None
        if str(trajectory.task.id) != str(task.id) or trajectory.task.prompt != task.prompt:
            logger.warning("trajectory %s is of another task (the prompt changed); the task runs again", path)
            return None
        if trajectory.termination == "error" and not trajectory.steps:
            return None
        return trajectory


def crashed_trajectory(task: Task, exc: Exception) -> Trajectory:
    """The record of a research that raised (a bug): termination 'error', nothing else lost."""
    return Trajectory(task=task, messages=[], termination="error", error=f"internal error: {type(exc).__name__}: {exc}",
                      started_at=_dt.datetime.now(_dt.UTC).isoformat())
