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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gensearcher.data import (
    JudgedRow,
    PathNotFound,
    Scores,
    SummaryRow,
    Task,
    ThrottledWriter,
    json_array,
    read_records,
)
from gensearcher.data.io import dumps, resolve_path, run_batch, unique_ids
from gensearcher.errors import UserError
from gensearcher.evaluate.scores import GROUPS, ItemResult, knowgen_means, knowgen_overall_means
from gensearcher.judge.judge import Judge, JudgeError, Kind

SUMMARY_KEY = "summary_type"


def _not_an_item(row: dict[str, Any]) -> bool:
    return SUMMARY_KEY in row or bool(row.get("pending"))


def load_rows(path: Path) -> list[JudgedRow]:
    """The item rows of a generation or evaluation file (JSON or JSONL), summary and pending rows left out.

    A row without an `id` gets its index, as the reference evaluator does.
    """
    if not path.is_file():
        raise UserError(f"results file not found: {path}")
    rows = read_records(path, JudgedRow, skip=_not_an_item)
    unique_ids(rows, path)
    return rows


class JudgeRunner:
    """Judge generation rows with one `Judge`, at most `concurrency` at once, resumable by `scores`.

    Args:
        judge: the judge (its cache is what makes a rerun skip finished judgements).
        kind: knowgen, wise-legacy or wise-verified.
        concurrency: judgements in flight.
        explanations: WISE's judging guides by item id (never part of the rows).
        on_item: called after each item with (row, finished count, total).
    """

    def __init__(self, judge: Judge, kind: Kind, *, concurrency: int = 32,
                 explanations: dict[str, str] | None = None,
                 on_item: Callable[[JudgedRow, int, int], None] | None = None):
        if concurrency < 1:
            raise UserError("concurrency must be at least 1")
        self.judge = judge
        self.kind = kind
        self.concurrency = concurrency
        self.explanations = explanations or {}
        self.on_item = on_item

    async def run(self, rows: list[JudgedRow], source: Path, out: Path) -> list[JudgedRow]:
        previous = {str(r.id): r for r in await asyncio.to_thread(_previous_rows, out)}
        done = {key: row for key, row in previous.items() if row.scores is not None}
        order = [str(row.id) for row in rows]
        finished = len(done)
        todo = [row for row in rows if str(row.id) not in done]
        writer = ThrottledWriter(out, order, json_array, tail=lambda: self._summary(order, done))
        for key, row in done.items():
            writer.put(key, dumps(row))

        # Judge calls wait in the judge's own semaphore too; the batch's concurrency bounds the rows in flight.
        await run_batch(todo, lambda row: self._judge_row(row, source), writer, concurrency=self.concurrency,
                        record=lambda judged: done.__setitem__(str(judged.id), judged), on_item=self.on_item,
                        finished=finished, total=len(rows))
        return [done[key] for key in order if key in done]

    def _summary(self, order: list[str], done: dict[str, JudgedRow]) -> list[str]:
        if self.kind != "knowgen":
            return []
        return [dumps(row) for row in reference_summary_rows(item_results([done[k] for k in order if k in done]))]

    async def _judge_row(self, row: JudgedRow, source: Path) -> JudgedRow:
        out = row.model_copy(deep=True)
        if not row.success or not row.output_path:
            return _failed(out, f"not generated: {row.error or 'no image'}")
        try:
            generated = resolve_path(row.output_path, source, what="generated image")
            if self.kind == "knowgen":
                if not row.gt_image:
                    raise JudgeError("no gt_image")
                truth = resolve_path(row.gt_image, source, what="gt_image")
                score = await self.judge.knowgen(row.id, row.prompt or "", generated, truth)
            else:
                explanation = self.explanations.get(str(row.id)) or (row.model_extra or {}).get("explanation")
                if not explanation:
                    raise JudgeError("no explanation for this item")
                score = await self.judge.wise("legacy" if self.kind == "wise-legacy" else "verified", row.prompt or "", str(explanation), generated)
        except PathNotFound as exc:
            return _failed(out, str(exc))
        except JudgeError as exc:
            failed = _failed(out, str(exc))
            failed.judge_raw = exc.raw or None
            return failed
        scores = Scores(rationale=score.rationale, **score.scores, overall=score.overall)
        if score.text_accuracy_na:
            scores.text_accuracy_na = True
        out.eval_success, out.scores, out.error, out.judge_raw = True, scores, None, score.raw
        return out


def _previous_rows(out: Path) -> list[JudgedRow]:
    return load_rows(out) if out.exists() else []


def _failed(row: JudgedRow, error: str) -> JudgedRow:
    row.eval_success, row.scores, row.error = False, None, error
    return row


def item_results(rows: list[JudgedRow]) -> list[ItemResult]:
    """Evaluation rows as scored items (failed generations and judgements included, marked)."""
    results = []
    for row in rows:
        scores = row.scores
        failure = None if scores else ("generation" if not row.success else "judgement")
        numeric: dict[str, float] = {}
        if scores is not None:
            for key in (*Scores.model_fields, *(scores.model_extra or {})):
                value = scores.number(key)
                if value is not None:
                    numeric[key] = value
        category = row.meta.category or str((row.model_extra or {}).get("category", ""))
        results.append(ItemResult(id=row.id, category=category, difficulty=row.meta.difficulty or "",
                                  judged=scores is not None, scores=numeric,
                                  text_na=bool(scores and scores.text_accuracy_na),
                                  overall=float(numeric.get("overall", 0.0)), failure=failure))
    return results


def reference_summary_rows(items: list[ItemResult]) -> list[SummaryRow]:
    """The three summary rows of the reference format, on 0-1, computed as the reference evaluator does:
    failures left out, a group without items counting 0 in `overall_avg`."""

    def shape(means: dict[str, float]) -> dict[str, float]:
        return {**{k: round(v, 4) for k, v in means.items() if k != "k_score"}, "overall": round(means["k_score"], 4)}

    rows = []
    for group, categories in GROUPS.items():
        members = [item for item in items if item.category.lower() in categories]
        rows.append(SummaryRow(summary_type=group, avg_scores=shape(knowgen_means(members, strict=False)),
                               count=sum(1 for m in members if m.judged)))
    known = [item for item in items if any(item.category.lower() in c for c in GROUPS.values())]
    rows.append(SummaryRow(summary_type="overall_avg", avg_scores=shape(knowgen_overall_means(known, strict=False)),
                           count=sum(r.count for r in rows)))
    return rows


def explanations_of(items: list[Task]) -> dict[str, str]:
    return {str(item.id): item.explanation for item in items if item.explanation}
