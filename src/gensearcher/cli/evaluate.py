"""`gensearcher eval knowgen | wise | custom | compare` and `gensearcher judge`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from gensearcher.cli import ConfigFile, _guarded, _ProgressReporter, app, eval_app
from gensearcher.errors import UserError

if TYPE_CHECKING:
    from gensearcher.data import JudgedRow
    from gensearcher.evaluate.benchmarks import Benchmark


def _run_eval_command(benchmark: Benchmark, load: Callable[[], list[Any]], *, config: Path | None, out: Path,
                      baseline: bool, limit: int | None, categories: str | None, research_concurrency: int | None,
                      generate_concurrency: int | None, judge_concurrency: int | None, rubric_file: Path | None,
                      system_prompt_file: Path | None, progress: bool) -> None:
    """The body every `eval` command shares: load, select, run the pipeline, print the summary."""

    def body() -> int:
        from gensearcher.config import load_settings
        from gensearcher.evaluate.pipeline import run_eval
        from gensearcher.judge.judge import load_rubric_file

        # Flags go through the settings model, so its bounds hold (a concurrency of 0 would never start).
        settings = load_settings({"agent": {"concurrency": research_concurrency},
                                  "generator": {"concurrency": generate_concurrency},
                                  "judge": {"concurrency": judge_concurrency}}, config_file=config)
        items = load()
        if categories:
            wanted = {c.strip().lower() for c in categories.split(",") if c.strip()}
            items = [item for item in items if item.category.lower() in wanted]
        if limit is not None:
            items = items[:limit]
        if not items:
            raise UserError("no items left after --categories / --limit")
        report = asyncio.run(run_eval(settings, benchmark, items, out, baseline=baseline,
                                      research_concurrency=settings.agent.concurrency,
                                      generate_concurrency=settings.generator.concurrency,
                                      progress=lambda stage, total: _ProgressReporter(total, enabled=progress, label=stage),
                                      rubric=load_rubric_file(rubric_file), system_prompt_file=system_prompt_file))
        from gensearcher.viewer.export import export_runs

        # The report is the viewer's static export (the same pages as `gensearcher view --export`).
        report["report"] = str(export_runs([out], out / "report"))
        typer.echo(json.dumps(report, indent=2, default=str))
        return 0

    raise typer.Exit(_guarded(body))


EvalOut = Annotated[Path, typer.Option("--out", help="Output folder (rerun with the same folder to resume).")]
Baseline = Annotated[bool, typer.Option("--baseline", help="Render the original prompts, no research (generator alone).")]
Limit = Annotated[int | None, typer.Option(help="Only the first N items.")]
Categories = Annotated[str | None, typer.Option(help="Comma-separated categories to keep.")]
ResearchN = Annotated[int | None, typer.Option(help="Research trajectories in flight (default: GENSEARCHER_AGENT_CONCURRENCY).")]
GenerateN = Annotated[int | None, typer.Option(help="Images in flight (default: GENSEARCHER_GENERATOR_CONCURRENCY).")]
JudgeN = Annotated[int | None, typer.Option(help="Judge calls in flight (default: GENSEARCHER_JUDGE_CONCURRENCY).")]
RubricFile = Annotated[Path | None, typer.Option(help="Replace the judge rubric (e.g. the original, from your copy).")]
SystemPrompt = Annotated[Path | None, typer.Option(help="Replace the agent's system prompt.")]
ProgressFlag = Annotated[bool, typer.Option(help="Show progress.")]


@eval_app.command("knowgen")
def eval_knowgen(data: Annotated[Path, typer.Option("--data", help="KnowGen-Bench.json")], out: EvalOut,
                 baseline: Baseline = False, limit: Limit = None, categories: Categories = None,
                 research_concurrency: ResearchN = None, generate_concurrency: GenerateN = None, judge_concurrency: JudgeN = None,
                 rubric_file: RubricFile = None, system_prompt_file: SystemPrompt = None, config: ConfigFile = None,
                 progress: ProgressFlag = True) -> None:
    """KnowGen: K-Score per group, category and difficulty, reference and strict."""
    from gensearcher.evaluate import load_knowgen

    _run_eval_command("knowgen", lambda: load_knowgen(data), config=config, out=out, baseline=baseline, limit=limit,
                      categories=categories, research_concurrency=research_concurrency,
                      generate_concurrency=generate_concurrency, judge_concurrency=judge_concurrency,
                      rubric_file=rubric_file, system_prompt_file=system_prompt_file, progress=progress)


@eval_app.command("wise")
def eval_wise(data: Annotated[Path, typer.Option("--data", help="A WISE json file or folder.")], out: EvalOut,
              version: Annotated[str, typer.Option(help="verified or legacy")] = "verified",
              baseline: Baseline = False, limit: Limit = None, categories: Categories = None,
              research_concurrency: ResearchN = None, generate_concurrency: GenerateN = None, judge_concurrency: JudgeN = None,
              rubric_file: RubricFile = None, system_prompt_file: SystemPrompt = None, config: ConfigFile = None,
              progress: ProgressFlag = True) -> None:
    """WISE (verified or legacy): per area and overall with the version's weights. The agent never sees Explanation."""
    from gensearcher.evaluate import load_wise

    # A plain string, checked here: a wrong value is then one line like every other input error.
    versions: dict[str, Literal["verified", "legacy"]] = {"verified": "verified", "legacy": "legacy"}

    def load() -> list[Any]:
        if version not in versions:
            raise UserError("--version must be verified or legacy")
        return load_wise(data, versions[version])

    benchmark: Benchmark = "wise-legacy" if version == "legacy" else "wise-verified"
    _run_eval_command(benchmark, load, config=config, out=out, baseline=baseline, limit=limit,
                      categories=categories, research_concurrency=research_concurrency,
                      generate_concurrency=generate_concurrency, judge_concurrency=judge_concurrency,
                      rubric_file=rubric_file, system_prompt_file=system_prompt_file, progress=progress)


@eval_app.command("custom")
def eval_custom(data: Annotated[Path, typer.Option("--data", help="JSON/JSONL of prompts with gt_image or explanation.")],
                out: EvalOut, baseline: Baseline = False, limit: Limit = None, categories: Categories = None,
                research_concurrency: ResearchN = None, generate_concurrency: GenerateN = None, judge_concurrency: JudgeN = None,
                rubric_file: RubricFile = None, system_prompt_file: SystemPrompt = None, config: ConfigFile = None,
                progress: ProgressFlag = True) -> None:
    """Your own prompts: judged like KnowGen (with gt_image) or like WISE (with explanation)."""
    from gensearcher.evaluate import load_custom

    _run_eval_command("custom", lambda: load_custom(data), config=config, out=out, baseline=baseline, limit=limit,
                      categories=categories, research_concurrency=research_concurrency,
                      generate_concurrency=generate_concurrency, judge_concurrency=judge_concurrency,
                      rubric_file=rubric_file, system_prompt_file=system_prompt_file, progress=progress)


@eval_app.command("compare")
def eval_compare(run_a: Annotated[Path, typer.Argument(help="Eval folder (or results_eval.json) A.")],
                 run_b: Annotated[Path, typer.Argument(help="Eval folder (or results_eval.json) B.")]) -> None:
    """Paired comparison: per-item differences, flipped items, and whether B - A is outside the noise."""

    def body() -> int:
        from gensearcher.evaluate.runner import item_results, load_rows
        from gensearcher.evaluate.scores import compare, knowgen_overall, wise_area, wise_tables

        def rows_of(path: Path) -> list[JudgedRow]:
            return load_rows(path / "results_eval.json" if path.is_dir() else path)

        a, b = item_results(rows_of(run_a)), item_results(rows_of(run_b))
        if all(wise_area(item.category) for item in a + b) and not any("faithfulness" in i.scores for i in a + b):
            version = "legacy" if any("consistency" in i.scores for i in a + b) else "verified"

            def statistic(items: Any) -> float:
                return 100 * float(wise_tables(items, version, resamples=0)["overall"]["reference"])
        else:
            def statistic(items: Any) -> float:
                return knowgen_overall(items, strict=False)

        typer.echo(json.dumps(compare(a, b, statistic), indent=2))
        return 0

    raise typer.Exit(_guarded(body))


@app.command()
def judge(
    results: Annotated[Path, typer.Option("--results", help="A generation results.json (reference format).")],
    out: Annotated[Path, typer.Option("--out", help="results_eval.json to write (rerun to resume).")],
    benchmark: Annotated[str, typer.Option(help="knowgen, wise-verified or wise-legacy")] = "knowgen",
    data: Annotated[Path | None, typer.Option(help="The WISE data (for the explanations).")] = None,
    concurrency: JudgeN = None,
    rubric_file: RubricFile = None,
    config: ConfigFile = None,
    progress: ProgressFlag = True,
) -> None:
    """Judge an existing generation output; writes the reference evaluation format plus scores.json beside it.

    Rows without an `id` get their index, as in the reference evaluator (`evaluate.runner.load_rows`).
    """

    def body() -> int:
        from gensearcher._files import write_json_atomic
        from gensearcher.agent.prompts import judge_rubrics
        from gensearcher.config import load_settings
        from gensearcher.evaluate import load_wise
        from gensearcher.evaluate.pipeline import score_tables
        from gensearcher.evaluate.runner import JudgeRunner, explanations_of, load_rows
        from gensearcher.judge import Judge
        from gensearcher.judge.judge import load_rubric_file
        from gensearcher.web import WebCache

        kinds: dict[str, Literal["knowgen", "wise-verified", "wise-legacy"]] = {
            "knowgen": "knowgen", "wise-verified": "wise-verified", "wise-legacy": "wise-legacy"}
        if benchmark not in kinds:
            raise UserError("--benchmark must be knowgen, wise-verified or wise-legacy")
        kind = kinds[benchmark]
        explanations = {}
        if kind != "knowgen":
            if data is None:
                raise UserError("WISE judging needs --data (the explanations)")
            explanations = explanations_of(load_wise(data, "verified" if kind == "wise-verified" else "legacy"))
        settings = load_settings({"judge": {"concurrency": concurrency}}, config_file=config)
        rows = load_rows(results)
        rubric = load_rubric_file(rubric_file)
        judge_ = Judge(settings.judge, cache=WebCache(settings.cache.dir or settings.output_dir / "web-cache"),
                       image_dir=out.parent / "judge-images",
                       rubrics=judge_rubrics(settings.reference_texts, {kind: rubric} if rubric else None))
        reporter = _ProgressReporter(len(rows), enabled=progress, label="judge")

        async def go() -> list[JudgedRow]:
            runner = JudgeRunner(judge_, kind, concurrency=settings.judge.concurrency,
                                 explanations=explanations, on_item=reporter.update)
            try:
                with reporter:
                    return await runner.run(rows, results, out)
            finally:
                await judge_.aclose()

        judged = asyncio.run(go())
        tables = score_tables(kind, judged)
        write_json_atomic(out.with_name("scores.json"), tables)
        typer.echo(json.dumps({"overall": tables["overall"], "costs": judge_.costs()}, indent=2))
        return 0

    raise typer.Exit(_guarded(body))


