"""The RL prompt set (the reference system's Gen-Searcher-RL-6k) as our tasks, split train/test with a seed.

Only `id`, `prompt` and `gt_image` are read (and `meta`, if present). An item without an id, with an empty
prompt, a duplicate id, or a ground-truth image that does not exist is reported with its index and left
out. Unlike the reference registration, ids are kept as given (it renumbered both splits from 0, so
reward files could not be traced back to the source items). The split shuffles with `random.Random(seed)`
and puts `int(n * (1 - test_ratio))` items in train, as the reference does with its train ratio.

    train.jsonl, test.jsonl   one `gensearcher.data.Task` per line (gt_image absolute)
    manifest.json             `RLManifest`: counts, seed, ratio, every item left out with its reason
"""

from __future__ import annotations

import datetime as _dt
import json
import random
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from gensearcher._files import write_atomic
from gensearcher.data.io import PathNotFound, read_rows, resolve_path
from gensearcher.data.records import Task
from gensearcher.errors import UserError
from gensearcher.train.dataset import SkippedRow

SPLITS = ("train", "test")


class RLManifest(BaseModel):
    """What an RL prompt folder holds."""

    format: Literal["gensearcher-rl"] = "gensearcher-rl"
    version: int = 1
    created_at: str = Field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat())
    source: str = Field(..., description="The imported file.")
    seed: int = Field(..., description="Seed of the shuffle before the split.")
    test_ratio: float = Field(..., description="Share of the items in the test split.")
    train: int = 0
    test: int = 0
    skipped: list[SkippedRow] = Field(default_factory=list, description="Every item left out, with the reason.")


def import_rl(path: Path, out: Path, *, test_ratio: float = 0.001, seed: int = 42) -> RLManifest:
    """Read the RL items, leave out the bad ones, split and write `out/` (which must not hold a split yet)."""
    if not 0 <= test_ratio < 1:
        raise UserError("--test-ratio must be in [0, 1)")
    if any((out / f"{split}.jsonl").exists() for split in SPLITS):
        raise UserError(f"{out} already holds a split: choose another --out")
    tasks: list[Task] = []
    skipped: list[SkippedRow] = []
    seen: set[str] = set()
    for index, item in enumerate(read_rows(path)):
        try:
            task = _task(item, path)
        except (TypeError, ValueError) as exc:
            skipped.append(SkippedRow(index=index, source=str(path), reason=str(exc)))
            continue
        if str(task.id) in seen:
            skipped.append(SkippedRow(index=index, source=str(path), reason=f"duplicate id {task.id!r}"))
            continue
        seen.add(str(task.id))
        tasks.append(task)
    random.Random(seed).shuffle(tasks)
    cut = int(len(tasks) * (1 - test_ratio) + 1e-9)
    splits = {"train": tasks[:cut], "test": tasks[cut:]}
    for split, items in splits.items():
        text = "".join(json.dumps(task.to_json(), ensure_ascii=False) + "\n" for task in items)
        write_atomic(out / f"{split}.jsonl", text.encode("utf-8"))
    manifest = RLManifest(source=str(path), seed=seed, test_ratio=test_ratio, train=cut, test=len(tasks) - cut,
                          skipped=skipped)
    write_atomic(out / "manifest.json", manifest.model_dump_json(indent=2).encode("utf-8"))
    return manifest


def _task(item: object, source: Path) -> Task:
    if not isinstance(item, dict):
        raise TypeError("not an object")
    if item.get("id") is None:
        raise ValueError("no id")
    prompt = item.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("empty prompt")
    gt = item.get("gt_image")
    if not isinstance(gt, str) or not gt:
        raise ValueError("no gt_image")
    try:
        gt_path = resolve_path(gt, source, what="gt_image")
    except PathNotFound as exc:
        raise ValueError(str(exc)) from None
    fields = {"id": item["id"], "prompt": prompt, "gt_image": str(gt_path)}
    if isinstance(item.get("meta"), dict):
        fields["meta"] = item["meta"]
    try:
        return Task.model_validate(fields)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"]) from None


def read_rl(folder: Path) -> tuple[RLManifest, dict[str, list[Task]]]:
    """An RL prompt folder's manifest and splits."""
    try:
        manifest = RLManifest.model_validate_json((folder / "manifest.json").read_bytes())
    except (OSError, ValidationError):
        raise UserError(f"{folder} is not an RL prompt folder (made by `gensearcher data import-rl`)") from None
    splits = {}
    for split in SPLITS:
        lines = (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        splits[split] = [Task.model_validate_json(line) for line in lines if line.strip()]
    return manifest, splits
