"""The `gensearcher` command line. Commands build their settings, then call library code.

Exit codes: 0 success; 1 the work ran but did not succeed (e.g. no answer); 2 a problem the user can fix
(bad configuration, missing file, feature not built), printed as one line without a traceback.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer

from gensearcher.agent.factory import build_agent
from gensearcher.errors import GenSearcherError, NotBuiltError, UserError

if TYPE_CHECKING:
    from gensearcher.config import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Search-grounded image generation.")
prompts_app = typer.Typer(no_args_is_help=True, help="Prompts and rubrics (import the reference system's).")
app.add_typer(prompts_app, name="prompts")
index_app = typer.Typer(no_args_is_help=True, help="The local search index.")
app.add_typer(index_app, name="index")
cache_app = typer.Typer(no_args_is_help=True, help="The record-and-replay web cache.")
app.add_typer(cache_app, name="cache")
eval_app = typer.Typer(no_args_is_help=True, help="Benchmarks: research -> generation -> judging -> tables.")
app.add_typer(eval_app, name="eval")

T = TypeVar("T")

ConfigFile = Annotated[Path | None, typer.Option("--config", help="A gensearcher.toml file.", dir_okay=False)]


def _guarded(body: Callable[[], T]) -> T:
    """Run a command body; user-fixable problems become one line on stderr and exit code 2."""
    try:
        return body()
    except (UserError, NotBuiltError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except GenSearcherError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def research(
    prompt: Annotated[str | None, typer.Argument(help="The image request to research.")] = None,
    input: Annotated[Path | None, typer.Option("--input", help="tasks.json or .jsonl for a batch.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Trajectories in flight (batch; default 8).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a batch, skipping finished items.")] = False,
    system_prompt_file: Annotated[Path | None, typer.Option(help="Replace the system prompt.")] = None,
    policy_base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible policy endpoint.")] = None,
    policy_model: Annotated[str | None, typer.Option(help="Served model name or local checkpoint.")] = None,
    max_llm_calls: Annotated[int | None, typer.Option(help="Rounds before the final round.")] = None,
    search_backend: Annotated[str | None, typer.Option(help="local, serper, ddgs or searxng.")] = None,
    local_corpus: Annotated[Path | None, typer.Option(help="Folder for the local search backend.")] = None,
    cache_mode: Annotated[str | None, typer.Option(help="Web cache: readwrite, replay, record or off.")] = None,
    config: ConfigFile = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (batch).")] = True,
) -> None:
    """Research one prompt, or a whole task file with --input.

    Examples:
        gensearcher research "The 2026 Tour de France winner lifting the trophy" --out runs/tdf
        gensearcher research --input KnowGen-Bench.json --out runs/knowgen --concurrency 16 --resume
    """
    overrides = {
        "output_dir": None,
        "policy": {"base_url": policy_base_url, "model": policy_model},
        "agent": {"max_llm_calls": max_llm_calls, "concurrency": concurrency},
        "search": {"backend": search_backend, "local_corpus": local_corpus},
        "cache": {"mode": cache_mode},
    }

    def body() -> int:
        if (prompt is None) == (input is None):
            raise UserError("give either a PROMPT or --input FILE")
        from gensearcher.config import load_settings

        settings = load_settings(overrides, config_file=config)
        if input is not None:
            return asyncio.run(_research_batch(settings, input, out, resume, system_prompt_file, progress))
        return asyncio.run(_research_one(settings, prompt or "", out, system_prompt_file))

    code = _guarded(body)
    raise typer.Exit(code)


async def _research_one(settings: Settings, prompt: str, out: Path | None, system_prompt_file: Path | None) -> int:
    from gensearcher.agent import Task

    out_dir = out or settings.output_dir / f"research-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    async with build_agent(settings, out_dir, system_prompt_file=system_prompt_file) as agent:
        trajectory = await agent.run(Task(id=0, prompt=prompt))
    path = out_dir / "trajectory.json"
    from gensearcher.agent.trajectory import save_trajectory

    save_trajectory(trajectory, path)
    summary = {
        "termination": trajectory.termination,
        "gen_prompt": trajectory.answer.gen_prompt if trajectory.answer else None,
        "reference_images": [r.model_dump(exclude_none=True) for r in trajectory.answer.reference_images]
        if trajectory.answer else [],
        "rounds": trajectory.rounds,
        "error": trajectory.error,
        "trajectory": str(path),
    }
    typer.echo(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0 if trajectory.termination == "answer" else 1


async def _research_batch(settings: Settings, input: Path, out: Path | None, resume: bool,
                          system_prompt_file: Path | None, progress: bool) -> int:
    from gensearcher.agent import BatchRunner, load_tasks

    tasks = load_tasks(input)
    out_dir = out or settings.output_dir / input.stem
    concurrency = settings.agent.concurrency
    reporter = _ProgressReporter(len(tasks), enabled=progress)
    async with build_agent(settings, out_dir, system_prompt_file=system_prompt_file,
                           max_connections=concurrency) as agent:
        runner = BatchRunner(agent, out_dir, concurrency=concurrency, resume=resume, on_item=reporter.update)
        with reporter:
            summary = await runner.run(tasks)
    typer.echo(summary.model_dump_json(indent=2))
    return 0


class _ProgressReporter:
    """A rich progress bar on a terminal; one line per item otherwise (logs, CI)."""

    def __init__(self, total: int, *, enabled: bool, label: str = "research"):
        self.total = total
        self.enabled = enabled
        self.label = label
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _ProgressReporter:
        if self.enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True))
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def update(self, row: Any, done: int, total: int) -> None:
        """`row` is any stage's record (research, generation or judged row)."""
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
        elif self.enabled:
            success = getattr(row, "success", None)
            if success is None:
                success = getattr(row, "eval_success", False)
            outcome = getattr(row, "termination", None) or ("ok" if success else f"error: {getattr(row, 'error', None)}")
            typer.echo(f"[{done}/{total}] id={row.id} {outcome}", err=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


@app.command("config")
def show_config(
    config: ConfigFile = None,
    env: Annotated[bool, typer.Option("--env", help="List the environment names of every setting.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the settings table (the README's).")] = False,
    update: Annotated[Path | None, typer.Option(help="With --markdown: rewrite the table block in this file.")] = None,
) -> None:
    """Print the effective configuration (secrets masked) as JSON."""

    def body() -> None:
        from gensearcher.config import all_env_names, load_settings

        if markdown:
            from gensearcher._settings_docs import settings_markdown, write_block

            if update is not None:
                write_block(update)
                typer.echo(f"updated the settings table in {update}")
            else:
                typer.echo(settings_markdown(), nl=False)
            return
        if env:
            typer.echo(json.dumps(all_env_names(), indent=2))
            return
        typer.echo(json.dumps(load_settings(config_file=config).masked(), indent=2, default=str))

    _guarded(body)


@prompts_app.command("import-reference")
def import_reference(
    path: Annotated[Path, typer.Argument(help="Your own Gen-Searcher checkout (its root folder).")],
    out: Annotated[Path, typer.Option("--out", help="The texts file to write.")] = Path("reference-texts.json"),
) -> None:
    """Import the reference system's prompts and rubrics from your checkout (parsed, never run)."""

    def body() -> None:
        from gensearcher.agent.prompts import import_reference_texts
        from gensearcher.config import env_name

        texts = import_reference_texts(path)
        texts.save(out)
        typer.echo(f"saved the reference texts of {texts.source} ({len(texts.files)} files, "
                   f"sha256 {texts.digest()[:12]}) to {out}; use them with {env_name(None, 'reference_texts')}={out}")

    _guarded(body)


@app.command()
def generate(
    input: Annotated[Path, typer.Option("--input", help="A research results.json.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    resume: Annotated[bool, typer.Option("--resume", help="Skip items already rendered.")] = False,
    concurrency: Annotated[int | None, typer.Option(help="Images in flight (default 1).")] = None,
    text_only: Annotated[bool, typer.Option("--text-only", help="Use gen_prompt without reference images.")] = False,
    original_prompt: Annotated[bool, typer.Option("--original-prompt", help="Render the original prompts (baseline).")] = False,
    generator: Annotated[str | None, typer.Option(help="diffusers, http, openai, gemini or seedream.")] = None,
    config: ConfigFile = None,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
) -> None:
    """Render every research result into an image.

    Examples:
        gensearcher generate --input runs/knowgen/results.json --out runs/knowgen-images --concurrency 8
        gensearcher generate --input runs/knowgen/results.json --out runs/baseline --original-prompt
    """

    def body() -> int:
        if text_only and original_prompt:
            raise UserError("--text-only and --original-prompt exclude each other")
        from gensearcher.config import load_settings
        from gensearcher.generate import build_generator
        from gensearcher.generate.base import request_defaults
        from gensearcher.generate.batch import GenerateRunner, load_research_results

        settings = load_settings({"generator": {"backend": generator, "concurrency": concurrency}}, config_file=config)
        rows = load_research_results(input)
        backend = build_generator(settings)
        mode: Literal["grounded", "text_only", "original"] = (
            "original" if original_prompt else "text_only" if text_only else "grounded"
        )
        reporter = _ProgressReporter(len(rows), enabled=progress, label="generate")

        async def go() -> Any:
            runner = GenerateRunner(backend, out, mode=mode, concurrency=settings.generator.concurrency, resume=resume,
                                    max_refs=settings.max_refs, defaults=request_defaults(settings.generator),
                                    on_item=reporter.update)
            try:
                with reporter:
                    return await runner.run(rows, input)
            finally:
                await backend.aclose()

        summary = asyncio.run(go())
        typer.echo(summary.model_dump_json(indent=2))
        return 0 if summary.failed == 0 else 1

    raise typer.Exit(_guarded(body))


@app.command()
def run(
    prompt: Annotated[str, typer.Argument(help="The image request.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    system_prompt_file: Annotated[Path | None, typer.Option(help="Replace the system prompt.")] = None,
    config: ConfigFile = None,
) -> None:
    """Research, then generate: writes image.png, trajectory.json and run.json (which ties them together)."""

    def body() -> int:
        from gensearcher.config import load_settings
        from gensearcher.pipeline import run_one

        settings = load_settings(config_file=config)
        record = asyncio.run(run_one(settings, prompt, out, system_prompt_file=system_prompt_file))
        summary = record.model_dump(mode="json", include={"termination", "gen_prompt", "image", "error"})
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0 if record.image else 1

    raise typer.Exit(_guarded(body))


@app.command()
def serve(
    model: Annotated[str, typer.Option("--model", help="Diffusers model id or pipeline folder (text-to-image or edit).")],
    edit_model: Annotated[str | None, typer.Option(help="An edit model for requests with images.")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (one pipeline each).")] = None,
    devices: Annotated[str | None, typer.Option(help="Comma-separated device per worker, e.g. cuda:0,cuda:1.")] = None,
    served_model_name: Annotated[str | None, typer.Option(
        help="Name in /v1/models and requests (default: the model folder's or id's last part).")] = None,
    config: ConfigFile = None,
) -> None:
    """Serve a diffusers pipeline: /generate (reference API), /v1/images/* (OpenAI), /health, /metrics."""

    def body() -> int:
        import uvicorn

        from gensearcher.config import load_settings
        from gensearcher.server import build_app

        settings = load_settings({"server": {"host": host, "port": port, "workers": workers, "devices": devices,
                                            "served_model_name": served_model_name}},
                                 config_file=config)
        server = settings.server
        if server.host not in ("127.0.0.1", "localhost", "::1") and server.token is None:
            typer.echo(f"warning: serving on {server.host} without GENSEARCHER_SERVER_TOKEN: anyone who can reach "
                       "this port can use it", err=True)
        app_ = build_app(settings, model=model, edit_model=edit_model)
        uvicorn.run(app_, host=server.host, port=server.port, log_level="info", access_log=False)
        return 0

    raise typer.Exit(_guarded(body))


@index_app.command("build")
def index_build(
    folder: Annotated[Path, typer.Argument(help="Documents (.txt .md .html .pdf) and images to index.")],
) -> None:
    """Index a folder for the `local` search backend (writes FOLDER/.gensearcher-index.sqlite)."""

    def body() -> None:
        from gensearcher.tools.local import build_index

        path, documents, images = build_index(folder)
        typer.echo(f"indexed {documents} documents and {images} images into {path}")

    _guarded(body)


def _open_cache(config: Path | None, run: Path | None = None) -> Any:
    from gensearcher.config import load_settings
    from gensearcher.web import WebCache

    settings = load_settings(config_file=config)
    # A run's tools record into <run>/web-cache unless GENSEARCHER_CACHE_DIR names a shared one.
    return WebCache(settings.cache.dir or (run or settings.output_dir) / "web-cache")


@cache_app.command("export")
def cache_export(
    out: Annotated[Path, typer.Argument(help="The archive to write (.tar).")],
    run: Annotated[Path, typer.Option("--run", help="A research output folder (trajectory.json or trajectories/).")],
    config: ConfigFile = None,
) -> None:
    """Write exactly the cache entries a run used: a frozen web for that run."""

    def body() -> None:
        from gensearcher.agent.batch import run_cache_keys

        keys = run_cache_keys(run)
        cache = _open_cache(config, run)
        written, missing = cache.export(keys, out)
        cache.close()
        typer.echo(f"exported {written} entries to {out}" + (f"; {len(missing)} keys were not in the cache" if missing else ""))

    _guarded(body)


@cache_app.command("import")
def cache_import(
    archive: Annotated[Path, typer.Argument(help="An archive written by `cache export`.")],
    config: ConfigFile = None,
) -> None:
    """Load an exported archive into the configured cache (then replay with GENSEARCHER_CACHE_MODE=replay)."""

    def body() -> None:
        cache = _open_cache(config)
        loaded = cache.import_archive(archive)
        cache.close()
        typer.echo(f"imported {loaded} entries into {cache.root}")

    _guarded(body)


# Commands that live in their own modules register themselves on `app` when imported.
from gensearcher.cli import data as _data_commands  # noqa: E402, F401
from gensearcher.cli import evaluate as _evaluate_commands  # noqa: E402, F401
from gensearcher.cli import train as _train_commands  # noqa: E402, F401
from gensearcher.cli import view as _view_command  # noqa: E402, F401


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0
