"""Benchmark loaders: KnowGen, WISE (verified and legacy), and a generic list of prompts.

Every loader returns `gensearcher.data.Task`s with the ground-truth paths made absolute (relative to the
data file, then the working folder). WISE's `Explanation` is kept on the task for the judge only: the
field is never written out, so the agent and the generator cannot see it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from gensearcher.data import Task, WiseItem, read_rows, read_tasks
from gensearcher.data.io import unique_ids
from gensearcher.errors import UserError

logger = logging.getLogger(__name__)
Benchmark = Literal["knowgen", "wise-verified", "wise-legacy", "custom"]


def load_knowgen(path: Path) -> list[Task]:
    """`KnowGen-Bench.json` (JSON or JSONL): {id, prompt, meta: {category, difficulty}, gt_image}; older
    files name the ground truth `gen_image`. A missing id becomes the index."""
    return _tasks(path, require_gt=True)


def load_wise(source: Path, version: Literal["verified", "legacy"]) -> list[Task]:
    """WISE prompts from one file or a folder of them ({Prompt, Explanation, Category, Subcategory, prompt_id})."""
    if source.is_dir():
        files = sorted(p for p in source.glob("*.json") if "rewrite" not in p.name and p.name != "merge.json")
        if not files:
            raise UserError(f"no WISE json files in {source}")
    else:
        files = [source]
    tasks = []
    for file in files:
        for index, row in enumerate(read_rows(file)):
            try:
                tasks.append(WiseItem.model_validate(row).task())
            except ValidationError:
                raise UserError(f"{file}: item {index} is not a WISE item (Prompt, Explanation, Category, prompt_id)") from None
    return _checked(tasks, source)


def load_custom(path: Path) -> list[Task]:
    """A list of prompt strings or objects {id?, prompt, meta?, gt_image?, explanation?}."""
    return _tasks(path, require_gt=False)


def _tasks(path: Path, *, require_gt: bool) -> list[Task]:
    tasks = read_tasks(path)
    for task in tasks:
        if require_gt and not task.gt_image:
            raise UserError(f"{path}: item {task.id!r} has no gt_image")
    return _checked(tasks, path)


def _checked(tasks: list[Task], source: Path) -> list[Task]:
    unique_ids(tasks, source)
    if not tasks:
        raise UserError(f"{source} holds no items")
    return tasks
