"""Judging a generation output, in the reference system's evaluation formats (files move both ways).

Input rows: `{id, success, prompt, meta, output_path, gt_image}` (paths relative to the input file work).
Output rows: the input row plus `eval_success` and `scores` (`rationale`, the dimensions, `overall`,
`text_accuracy_na`) or `scores: null` and `error`; the judge's raw answer under `judge_raw`; then the
summary rows `{summary_type, avg_scores, count}` of the reference format. The file is rewritten atomically
at most once a second and at the end: the judge's cache, written as each answer arrives, is what makes a
rerun skip finished judgements, so rewriting a large file after every item would only cost time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gensearcher._concurrency import gather_or_cancel
from gensearcher._files import write_atomic
from gensearcher.errors import UserError
from gensearcher.evaluate.data import EvalItem
from gensearcher.judge.judge import Judge, JudgeError, Kind
from gensearcher.evaluate.scores import GROUPS, ItemResult, knowgen_aggregate

SUMMARY_KEY = "summary_type"
WRITE_EVERY_S = 1.0


def load_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"results file not found: {path}")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(rows, list):
        raise UserError(f"{path} must hold a list")
    return [row for row in rows if isinstance(row, dict) and SUMMARY_KEY not in row and not row.get("pending")]


class JudgeRunner:
    def __init__(self, judge: Judge, kind: Kind, *, concurrency: int = 32,
                 explanations: dict[str, str] | None = None,
                 on_item: Callable[[dict[str, Any], int, int], None] | None = None):
        self.judge = judge
        self.kind = kind
        self.concurrency = concurrency
        self.explanations = explanations or {}
        self.on_item = on_item

    async def run(self, rows: list[dict[str, Any]], source: Path, out: Path) -> list[dict[str, Any]]:
        previous = {str(r["id"]): r for r in load_rows(out)} if out.exists() else {}
        done = {key: row for key, row in previous.items() if isinstance(row.get("scores"), dict)}
        order = [str(row["id"]) for row in rows]
        lock, limit, finished = asyncio.Lock(), asyncio.Semaphore(self.concurrency), len(done)
        todo = [row for row in rows if str(row["id"]) not in done]
        last_write = 0.0

        async def one(row: dict[str, Any]) -> None:
            nonlocal finished, last_write
            async with limit:
                judged = await self._judge_row(row, source.parent)
            async with lock:
                done[str(row["id"])] = judged
                if time.monotonic() - last_write >= WRITE_EVERY_S:
                    self._write(out, order, done)
                    last_write = time.monotonic()
                finished += 1
                if self.on_item:
                    self.on_item(judged, finished, len(rows))

        try:
            await gather_or_cancel(one(row) for row in todo)
        finally:
            self._write(out, order, done)  # also when interrupted: keep what was judged
        return [done[key] for key in order if key in done]

    async def _judge_row(self, row: dict[str, Any], base: Path) -> dict[str, Any]:
        out = dict(row)
        if not row.get("success") or not row.get("output_path"):
            return {**out, "eval_success": False, "scores": None, "error": f"not generated: {row.get('error') or 'no image'}"}
        generated = _resolve(str(row["output_path"]), base)
        try:
            if self.kind == "knowgen":
                if not row.get("gt_image"):
                    raise JudgeError("no gt_image")
                score = await self.judge.knowgen(row["id"], row["prompt"], generated, _resolve(str(row["gt_image"]), base))
            else:
                explanation = self.explanations.get(str(row["id"])) or row.get("explanation")
                if not explanation:
                    raise JudgeError("no explanation for this item")
                version = "legacy" if self.kind == "wise-legacy" else "verified"
                score = await self.judge.wise(version, row["prompt"], explanation, generated)
        except JudgeError as exc:
            return {**out, "eval_success": False, "scores": None, "error": str(exc), "judge_raw": exc.raw or None}
        scores: dict[str, Any] = {"rationale": score.rationale, **score.scores, "overall": score.overall}
        if score.text_accuracy_na:
            scores["text_accuracy_na"] = True
        return {**out, "eval_success": True, "scores": scores, "error": None, "judge_raw": score.raw}

    def _write(self, path: Path, order: list[str], done: dict[str, dict[str, Any]]) -> None:
        rows = [done[key] for key in order if key in done]
        if self.kind == "knowgen":
            rows += reference_summary_rows(item_results(rows))
        write_atomic(path, json.dumps(rows, ensure_ascii=False, indent=1).encode("utf-8"))


def _resolve(path: str, base: Path) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else (base / candidate).resolve()


def item_results(rows: list[dict[str, Any]]) -> list[ItemResult]:
    """Evaluation rows as scored items (failed generations and judgements included, marked)."""
    results = []
    for row in rows:
        if SUMMARY_KEY in row:
            continue
        meta = row.get("meta") or {}
        scores = row.get("scores") if isinstance(row.get("scores"), dict) else None
        failure = None if scores else ("generation" if not row.get("success") else "judgement")
        numeric = {k: float(v) for k, v in (scores or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        results.append(ItemResult(id=row["id"], category=str(meta.get("category", row.get("category", ""))),
                                  difficulty=str(meta.get("difficulty", "")), judged=scores is not None, scores=numeric,
                                  text_na=bool(scores and scores.get("text_accuracy_na")),
                                  overall=float(numeric.get("overall", 0.0)), failure=failure))
    return results


def reference_summary_rows(items: list[ItemResult]) -> list[dict[str, Any]]:
    """The three summary rows of the reference format (0-1 scale, failures left out, as it computes them)."""
    rows = []
    values = {}
    for group, categories in GROUPS.items():
        members = [item for item in items if item.category.lower() in categories]
        aggregate = knowgen_aggregate(members, strict=False)
        values[group] = {**{k: round(v / 100, 4) for k, v in aggregate.items() if k != "k_score"},
                         "overall": round(aggregate["k_score"] / 100, 4)}
        rows.append({SUMMARY_KEY: group, "avg_scores": values[group], "count": sum(1 for m in members if m.judged)})
    keys = values["science_and_knowledge"].keys()
    average = {key: round((values["science_and_knowledge"][key] + values["pop_culture_and_news"][key]) / 2, 4) for key in keys}
    rows.append({SUMMARY_KEY: "overall_avg", "avg_scores": average, "count": sum(r["count"] for r in rows)})
    return rows


def explanations_of(items: list[EvalItem]) -> dict[str, str]:
    return {str(item.id): item.explanation for item in items if item.explanation}
