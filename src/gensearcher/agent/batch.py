"""Batch research: many tasks, concurrently, resumably.

Each finished item is written at once as `trajectories/<id>.json` (atomically); `results.json` (the
reference system's agent-output format) is rewritten atomically after every item. The trajectory files
are the source of truth: `--resume` skips every task whose trajectory ended other than in 'error', so no
finished research is redone. A task that crashes is recorded as an error row and the batch goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gensearcher._concurrency import gather_or_cancel
from gensearcher._files import write_atomic
from gensearcher.agent.loop import Agent
from gensearcher.agent.trajectory import Task, Trajectory
from gensearcher.errors import UserError

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
TRAJECTORY_DIR = "trajectories"


def load_tasks(path: Path) -> list[Task]:
    """Read tasks from JSON (a list) or JSONL. Items are KnowGen-style objects or plain prompt strings.

    Ids are kept as given (numbers or strings); a missing id becomes the item's index.
    """
    if not path.is_file():
        raise UserError(f"input file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl" or (not text.lstrip().startswith("[") and "\n" in text.strip()):
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON/JSONL: {exc}") from None
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not items:
        raise UserError(f"{path} must hold a non-empty list of tasks")
    tasks: list[Task] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        if isinstance(item, str):
            item = {"id": index, "prompt": item}
        if not isinstance(item, dict):
            raise UserError(f"{path}: item {index} is neither a prompt string nor an object")
        item = {"id": index, **item} if item.get("id") is None else item
        try:
            task = Task.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise UserError(f"{path}: item {index}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        if str(task.id) in seen:
            raise UserError(f"{path}: duplicate id {task.id!r}")
        seen.add(str(task.id))
        tasks.append(task)
    return tasks


def trajectory_filename(task_id: int | str | None) -> str:
    """A safe, unique file name for a task id."""
    raw = str(task_id)
    if re.fullmatch(r"[A-Za-z0-9_.\-]{1,80}", raw) and not raw.startswith("."):
        return f"{raw}.json"
    slug = re.sub(r"[^A-Za-z0-9_\-]+", "_", raw)[:60].strip("_") or "item"
    return f"{slug}-{hashlib.sha1(raw.encode()).hexdigest()[:10]}.json"


def result_row(trajectory: Trajectory, trajectory_path: str) -> dict[str, Any]:
    """One row of results.json, in the reference system's agent-output format (plus `error`)."""
    task, answer = trajectory.task, trajectory.answer
    return {
        "id": task.id,
        "prompt": task.prompt,
        "meta": task.meta,
        "termination": trajectory.termination,
        "gen_prompt": answer.gen_prompt if answer else "",
        "reference_images": [
            {"img_id": r.img_id, "note": r.note, "local_path": r.local_path, "url": r.url, "title": r.title,
             "page_url": r.page_url}
            for r in (answer.reference_images if answer else [])
        ],
        "gt_image": task.gt_image,
        "trajectory": trajectory_path,
        "error": trajectory.error,
    }


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
    total: int
    skipped: int
    ran: int
    terminations: dict[str, int]
    results_path: str


class BatchRunner:
    """Run an `Agent` over many tasks with at most `concurrency` in flight.

    Args:
        agent: the agent (shared by all tasks: one policy client, one toolbox).
        out_dir: where results.json and trajectories/ go.
        concurrency: trajectories in flight at once.
        resume: skip tasks that already have a finished trajectory in `out_dir`.
        on_item: called after each item with (row, finished count, total), e.g. for a progress bar.
    """

    def __init__(self, agent: Agent, out_dir: Path, *, concurrency: int = 8, resume: bool = False,
                 on_item: Callable[[dict[str, Any], int, int], None] | None = None):
        if concurrency < 1:
            raise UserError("--concurrency must be at least 1")
        self.agent = agent
        self.out_dir = out_dir
        self.concurrency = concurrency
        self.resume = resume
        self.on_item = on_item

    async def run(self, tasks: list[Task]) -> BatchSummary:
        results_path = self.out_dir / RESULTS_FILE
        if results_path.exists() and not self.resume:
            raise UserError(f"{results_path} exists: pass --resume to continue that run, or choose another --out")
        (self.out_dir / TRAJECTORY_DIR).mkdir(parents=True, exist_ok=True)
        rows: dict[str, str] = {}  # task id -> serialised row, kept in input order when written
        todo: list[Task] = []
        for task in tasks:
            row = self._finished_row(task) if self.resume else None
            if row is None:
                todo.append(task)
            else:
                rows[str(task.id)] = json.dumps(row, ensure_ascii=False)
        order = [str(task.id) for task in tasks]
        write_lock = asyncio.Lock()
        semaphore = asyncio.Semaphore(self.concurrency)
        done = len(rows)

        async def one(task: Task) -> None:
            nonlocal done
            async with semaphore:
                row = await self._research(task)
            async with write_lock:
                rows[str(task.id)] = json.dumps(row, ensure_ascii=False)
                self._write_results(results_path, order, rows)
                done += 1
                if self.on_item:
                    self.on_item(row, done, len(tasks))

        if not todo:
            self._write_results(results_path, order, rows)
        await gather_or_cancel(one(task) for task in todo)
        terminations: dict[str, int] = {}
        for text in rows.values():
            key = json.loads(text)["termination"]
            terminations[key] = terminations.get(key, 0) + 1
        return BatchSummary(total=len(tasks), skipped=len(tasks) - len(todo), ran=len(todo),
                            terminations=terminations, results_path=str(results_path))

    async def _research(self, task: Task) -> dict[str, Any]:
        relative = f"{TRAJECTORY_DIR}/{trajectory_filename(task.id)}"
        try:
            trajectory = await self.agent.run(task)
        except Exception as exc:  # a bug must cost one item, not the batch
            logger.exception("task %r crashed", task.id)
            return {**result_row(_crashed(task, exc), relative)}
        write_atomic(self.out_dir / relative, trajectory.model_dump_json(indent=1).encode("utf-8"))
        return result_row(trajectory, relative)

    def _finished_row(self, task: Task) -> dict[str, Any] | None:
        relative = f"{TRAJECTORY_DIR}/{trajectory_filename(task.id)}"
        path = self.out_dir / relative
        if not path.is_file():
            return None
        try:
            trajectory = Trajectory.model_validate_json(path.read_bytes())
        except ValidationError:
            logger.warning("ignoring unreadable trajectory %s; the task runs again", path)
            return None
        if trajectory.termination == "error" or str(trajectory.task.id) != str(task.id):
            return None
        return result_row(trajectory, relative)

    @staticmethod
    def _write_results(path: Path, order: list[str], rows: dict[str, str]) -> None:
        body = ",\n".join(rows[key] for key in order if key in rows)
        write_atomic(path, f"[\n{body}\n]\n".encode())


def _crashed(task: Task, exc: Exception) -> Trajectory:
    import datetime as _dt

    return Trajectory(task=task, messages=[], termination="error", error=f"internal error: {type(exc).__name__}: {exc}",
                      started_at=_dt.datetime.now(_dt.UTC).isoformat())
