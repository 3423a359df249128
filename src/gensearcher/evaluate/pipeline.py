"""`gensearcher eval`: research -> generation -> judging as resumable stages, then tables and a report.

    DIR/research/      the agent's results.json and trajectories (skipped with --baseline)
    DIR/images/        the generation results.json and images
    DIR/results_eval.json   judged rows (reference evaluation format)
    DIR/scores.json    the tables;  DIR/costs.json  calls, tokens and time per stage;  DIR/report/index.html

Each stage resumes from its own files, so a run killed at any moment and started again does not repeat a
finished external call, and ends with the numbers an uninterrupted run gives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gensearcher._files import write_json_atomic
from gensearcher.agent.batch import trajectory_filename
from gensearcher.agent.trajectory import TRAJECTORY_DIR, load_trajectory
from gensearcher.config import Settings
from gensearcher.data import JudgedRow, ResearchRow, Task, read_records
from gensearcher.evaluate.benchmarks import Benchmark
from gensearcher.evaluate.runner import JudgeRunner, explanations_of, item_results
from gensearcher.evaluate.scores import knowgen_tables, wise_tables
from gensearcher.judge.judge import Judge, Kind
from gensearcher.web import WebCache

Progress = Callable[[str, int], Any]  # (stage name, total) -> reporter with update() and a context manager


def judge_kind(benchmark: Benchmark, items: list[Task]) -> Kind:
    if benchmark == "knowgen":
        return "knowgen"
    if benchmark in ("wise-verified", "wise-legacy"):
        return benchmark
    if all(item.gt_image for item in items):
        return "knowgen"
    if all(item.explanation for item in items):
        return "wise-verified"
    from gensearcher.errors import UserError

    raise UserError("custom items need a gt_image (judged like KnowGen) or an explanation (judged like WISE) each")


async def run_eval(settings: Settings, benchmark: Benchmark, items: list[Task], out: Path, *, baseline: bool,
                   research_concurrency: int, generate_concurrency: int, progress: Progress,
                   rubric: str | None = None, system_prompt_file: Path | None = None) -> dict[str, Any]:
    from gensearcher.agent.factory import build_agent
    from gensearcher.agent.prompts import judge_rubrics
    from gensearcher.generate import build_generator
    from gensearcher.generate.base import request_defaults
    from gensearcher.generate.batch import GenerateRunner

    kind = judge_kind(benchmark, items)
    generator = build_generator(settings)  # validate everything before the first call
    judge = Judge(settings.judge, cache=WebCache(settings.cache.dir or settings.output_dir / "web-cache"),
                  image_dir=out / "judge-images",
                  rubrics=judge_rubrics(settings.reference_texts, {kind: rubric} if rubric else None))
    costs: dict[str, Any] = {}
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    try:
        if baseline:
            rows = [ResearchRow(id=i.id, prompt=i.prompt, meta=i.meta, gt_image=i.gt_image) for i in items]
            source = out / "baseline-tasks.json"
            write_json_atomic(source, [row.to_json() for row in rows])
        else:
            rows, source = await _research(settings, items, out / "research", research_concurrency, progress,
                                           system_prompt_file, costs, build_agent)
        started = time.monotonic()
        runner = GenerateRunner(generator, out / "images", mode="original" if baseline else "grounded",
                                concurrency=generate_concurrency, resume=True, max_refs=settings.max_refs,
                                defaults=request_defaults(settings.generator))
        with progress("generate", len(rows)) as reporter:
            runner.on_item = reporter.update
            summary = await runner.run(rows, source)
        costs["generate"] = {"items": summary.total, "rendered_now": summary.total - summary.skipped,
                             "failed": summary.failed, "seconds": round(time.monotonic() - started, 2)}
        generated = read_records(out / "images" / "results.json", JudgedRow, skip=lambda row: bool(row.get("pending")))
        started = time.monotonic()
        judging = JudgeRunner(judge, kind, concurrency=settings.judge.concurrency, explanations=explanations_of(items))
        with progress("judge", len(generated)) as reporter:
            judging.on_item = reporter.update
            judged = await judging.run(generated, out / "images" / "results.json", out / "results_eval.json")
        costs["judge"] = {**judge.costs(), "seconds": round(time.monotonic() - started, 2)}
    finally:
        await generator.aclose()
        await judge.aclose()
        if judge.cache is not None:
            judge.cache.close()
    tables = score_tables(kind, judged)
    write_json_atomic(out / "scores.json", tables)
    write_json_atomic(out / "costs.json", costs)
    return {"scores": tables.get("overall"), "costs": costs, "out": str(out)}


def score_tables(kind: Kind, rows: list[JudgedRow]) -> dict[str, Any]:
    items = item_results(rows)
    if kind == "knowgen":
        return {"benchmark": "knowgen", **knowgen_tables(items)}
    return {"benchmark": kind, **wise_tables(items, "legacy" if kind == "wise-legacy" else "verified")}


async def _research(settings: Settings, items: list[Task], out: Path, concurrency: int, progress: Progress,
                    system_prompt_file: Path | None, costs: dict[str, Any], build_agent: Any) -> tuple[list[ResearchRow], Path]:
    from gensearcher.agent import BatchRunner

    started = time.monotonic()
    async with build_agent(settings, out, system_prompt_file=system_prompt_file,
                           max_connections=concurrency) as agent:
        with progress("research", len(items)) as reporter:
            runner = BatchRunner(agent, out, concurrency=concurrency, resume=True, on_item=reporter.update)
            summary = await runner.run(items)
    # Costs of this benchmark's items only (the folder may hold trajectories of earlier, larger runs).
    wanted = {trajectory_filename(item.id) for item in items}
    trajectories = [load_trajectory(p) for p in (out / TRAJECTORY_DIR).glob("*.json") if p.name in wanted]
    costs["research"] = {"items": summary.total, "researched_now": summary.ran, "terminations": summary.terminations,
                         "policy_calls": sum(len(t.steps) for t in trajectories),
                         "prompt_tokens": sum(t.usage.prompt_tokens for t in trajectories),
                         "completion_tokens": sum(t.usage.completion_tokens for t in trajectories),
                         "tool_calls": sum(len(t.tool_calls) for t in trajectories),
                         "seconds": round(time.monotonic() - started, 2)}
    return read_records(out / "results.json", ResearchRow), out / "results.json"
