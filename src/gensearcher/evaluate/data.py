"""Benchmark loaders: KnowGen, WISE (verified and legacy), and a generic list of prompts.

Every loader returns `EvalItem`s with paths made absolute (relative to the data file). WISE's
`Explanation` is kept for the judge only: `EvalItem.task()` never carries it, so the agent and the
generator cannot see it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from gensearcher.agent.trajectory import Task
from gensearcher.errors import UserError

Benchmark = Literal["knowgen", "wise-verified", "wise-legacy", "custom"]


class EvalItem(BaseModel):
    id: int | str
    prompt: str
    category: str = ""
    difficulty: str = ""
    subcategory: str = ""
    gt_image: str | None = None
    explanation: str | None = None  # the judge's guide; never shown to the agent or the generator

    @property
    def meta(self) -> dict[str, Any]:
        return {key: value for key, value in (("category", self.category), ("difficulty", self.difficulty),
                                              ("subcategory", self.subcategory)) if value}

    def task(self) -> Task:
        return Task(id=self.id, prompt=self.prompt, meta=self.meta, gt_image=self.gt_image)


def _read(path: Path) -> list[Any]:
    if not path.is_file():
        raise UserError(f"benchmark file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise UserError(f"{path} must hold a list")
    return data


def load_knowgen(path: Path) -> list[EvalItem]:
    """`KnowGen-Bench.json`: {id, prompt, meta: {category, difficulty}, gt_image} (legacy key gen_image)."""
    items = []
    for index, row in enumerate(_read(path)):
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise UserError(f"{path}: item {index} has no prompt")
        meta = row.get("meta") or {}
        gt = row.get("gt_image") or row.get("gen_image")
        if not gt:
            raise UserError(f"{path}: item {row.get('id', index)} has no gt_image")
        items.append(EvalItem(id=row.get("id", index), prompt=row["prompt"], category=str(meta.get("category", "")),
                              difficulty=str(meta.get("difficulty", "")), gt_image=str(_absolute(gt, path))))
    return _unique(items, path)


def load_wise(source: Path, version: Literal["verified", "legacy"]) -> list[EvalItem]:
    """WISE prompts from one file or a folder of them ({Prompt, Explanation, Category, Subcategory, prompt_id})."""
    if source.is_dir():
        files = sorted(p for p in source.glob("*.json") if "rewrite" not in p.name and p.name != "merge.json")
        if not files:
            raise UserError(f"no WISE json files in {source}")
    else:
        files = [source]
    items = []
    for file in files:
        for index, row in enumerate(_read(file)):
            try:
                items.append(EvalItem(id=int(row["prompt_id"]), prompt=str(row["Prompt"]), category=str(row["Category"]),
                                      subcategory=str(row.get("Subcategory") or ""), explanation=str(row["Explanation"])))
            except (KeyError, TypeError, ValueError, ValidationError):
                raise UserError(f"{file}: item {index} is not a WISE item (Prompt, Explanation, Category, prompt_id)") from None
    return _unique(items, source)


def load_custom(path: Path) -> list[EvalItem]:
    """A list of prompt strings or objects {id?, prompt, meta?, gt_image?, explanation?}."""
    items = []
    for index, row in enumerate(_read(path)):
        if isinstance(row, str):
            row = {"prompt": row}
        if not isinstance(row, dict) or not row.get("prompt"):
            raise UserError(f"{path}: item {index} has no prompt")
        meta = row.get("meta") or {}
        gt = row.get("gt_image")
        items.append(EvalItem(id=row.get("id", index), prompt=row["prompt"], category=str(meta.get("category", "")),
                              difficulty=str(meta.get("difficulty", "")), explanation=row.get("explanation"),
                              gt_image=str(_absolute(gt, path)) if gt else None))
    return _unique(items, path)


def _absolute(value: str, data_file: Path) -> Path:
    candidate = Path(value)
    return candidate if candidate.is_absolute() else (data_file.parent / candidate).resolve()


def _unique(items: list[EvalItem], source: Path) -> list[EvalItem]:
    seen: set[str] = set()
    for item in items:
        if str(item.id) in seen:
            raise UserError(f"{source}: duplicate id {item.id!r}")
        seen.add(str(item.id))
    if not items:
        raise UserError(f"{source} holds no items")
    return items
