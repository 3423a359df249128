"""`gensearcher data import-sft | sft | export-sft | import-rl | stats | validate`: training data."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from gensearcher.cli import _guarded, app
from gensearcher.errors import UserError

data_app = typer.Typer(no_args_is_help=True, help="Training data: SFT rows and RL prompts.")
app.add_typer(data_app, name="data")

MaxPixels = Annotated[int, typer.Option(help="Pixel cap of imported images (the agent's policy.max_pixels).")]


def _echo(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _skipped_lines(skipped: list[Any]) -> None:
    for row in skipped:
        typer.echo(f"skipped {row.source} [{row.index}]: {row.reason}", err=True)


@data_app.command("import-sft")
def import_sft(
    file: Annotated[Path, typer.Argument(help="A LLaMA-Factory sharegpt file (e.g. Gen-Searcher's sft_data.json).")],
    out: Annotated[Path, typer.Option("--out", help="The dataset folder to create.")],
    images_root: Annotated[Path | None, typer.Option(help="Folder relative image paths are joined to.")] = None,
    max_pixels: MaxPixels = 160_000,
) -> None:
    """Import a sharegpt SFT file; bad rows are reported (index and reason) and left out."""

    def body() -> None:
        from gensearcher.train.dataset import summary
        from gensearcher.train.sharegpt import import_sharegpt

        manifest, rows = import_sharegpt(file, out, images_root=images_root, max_pixels=max_pixels)
        _skipped_lines(manifest.skipped)
        _echo({"out": str(out), "imported": manifest.rows, "skipped": len(manifest.skipped), **summary(rows)})

    _guarded(body)


@data_app.command("sft")
def from_runs(
    runs: Annotated[list[Path], typer.Option("--from", help="A research output folder (repeat for more).")],
    out: Annotated[Path, typer.Option("--out", help="The dataset folder to create.")],
    judged: Annotated[list[Path] | None, typer.Option("--judged", help="results_eval.json: one for all, or one per --from.")] = None,
    min_score: Annotated[float | None, typer.Option(help="Keep rows judged at or above this overall score.")] = None,
    keep_invalid_turns: Annotated[bool, typer.Option(help="Keep runs in which the model wrote an unusable turn.")] = False,
) -> None:
    """Our trajectories as SFT rows: answer terminations only; with --judged, the best ones (rejection sampling)."""

    def body() -> None:
        from gensearcher.train.dataset import SFTManifest, prepare_out, rows_from_runs, summary, write_dataset

        store = prepare_out(out)
        rows, skipped = rows_from_runs(runs, store, judged=judged or None, min_score=min_score,
                                       keep_invalid_turns=keep_invalid_turns)
        manifest = write_dataset(store, rows, SFTManifest(sources=[str(r) for r in runs], skipped=skipped))
        _skipped_lines(skipped)
        _echo({"out": str(out), "rows": manifest.rows, "skipped": len(skipped), **summary(rows)})

    _guarded(body)


@data_app.command("export-sft")
def export_sft(
    dataset: Annotated[Path, typer.Argument(help="Our SFT dataset folder.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the export.")],
    format: Annotated[str, typer.Option("--format", help="llamafactory (sharegpt).")] = "llamafactory",
    name: Annotated[str, typer.Option(help="Dataset name in dataset_info.json (and the file name).")] = "gensearcher_sft",
) -> None:
    """Write the dataset for another trainer: LLaMA-Factory sharegpt plus its dataset_info.json entry."""

    def body() -> None:
        from gensearcher.train.dataset import read_dataset
        from gensearcher.train.sharegpt import export_llamafactory

        if format != "llamafactory":
            raise UserError(f"--format {format!r}: the one export format is llamafactory")
        _, rows = read_dataset(dataset)
        path, skipped = export_llamafactory(rows, dataset, out, name=name)
        _skipped_lines(skipped)
        _echo({"file": str(path), "dataset_info": str(out / "dataset_info.json"), "rows": len(rows) - len(skipped),
               "skipped": len(skipped)})

    _guarded(body)


@data_app.command("import-rl")
def import_rl(
    file: Annotated[Path, typer.Argument(help="The RL prompt file (id, prompt, gt_image), e.g. rl_data.json.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for train.jsonl, test.jsonl and manifest.json.")],
    test_ratio: Annotated[float, typer.Option(help="Share of items in the test split.")] = 0.001,
    seed: Annotated[int, typer.Option(help="Seed of the shuffle before the split.")] = 42,
) -> None:
    """Import RL prompts; items without a prompt or with a missing image are reported and skipped."""

    def body() -> None:
        from gensearcher.train.rl_data import import_rl as run

        manifest = run(file, out, test_ratio=test_ratio, seed=seed)
        _skipped_lines(manifest.skipped)
        _echo({"out": str(out), "train": manifest.train, "test": manifest.test, "skipped": len(manifest.skipped)})

    _guarded(body)


DataPath = Annotated[Path, typer.Argument(help="An SFT or RL folder, or a sharegpt / RL file.")]
ImagesRoot = Annotated[Path | None, typer.Option(help="For a sharegpt file: folder of its relative image paths.")]


@data_app.command("stats")
def stats(path: DataPath, images_root: ImagesRoot = None) -> None:
    """Counts, turns, images and (estimated) tokens per row."""
    _guarded(lambda: _echo(inspect(path, validate=False, images_root=images_root)))


@data_app.command("validate")
def validate(path: DataPath, images_root: ImagesRoot = None) -> None:
    """Check every row; exit 1 when any is bad (each is listed with its index and reason)."""

    def body() -> int:
        report = inspect(path, validate=True, images_root=images_root)
        for problem in report.get("problems", []):
            typer.echo(f"bad [{problem['index']}]: {problem['reason']}", err=True)
        _echo(report)
        return 1 if report.get("problems") else 0

    raise typer.Exit(_guarded(body))


def inspect(path: Path, *, validate: bool, images_root: Path | None = None) -> dict[str, Any]:
    """Statistics (and, with `validate`, the problems) of any of our data folders or input files."""
    from gensearcher.data.io import read_rows

    manifest = path / "manifest.json"
    if path.is_dir() and manifest.is_file():
        kind = json.loads(manifest.read_text(encoding="utf-8")).get("format")
        if kind == "gensearcher-rl":
            return _rl_folder(path)
        return _sft_folder(path, validate)
    if path.is_dir():
        raise UserError(f"{path} is neither an SFT nor an RL folder (no manifest.json)")
    items = read_rows(path)
    if items and isinstance(items[0], dict) and "messages" in items[0]:
        return _sharegpt_file(path, images_root)
    return _rl_file(path)


def _sft_folder(path: Path, validate: bool) -> dict[str, Any]:
    from gensearcher.images import sha256_file
    from gensearcher.train.dataset import check_control_tokens, read_dataset, summary

    manifest, rows = read_dataset(path)
    report: dict[str, Any] = {"kind": "sft", "skipped_at_build": len(manifest.skipped), **summary(rows)}
    if validate:
        problems = []
        for row in rows:
            try:
                check_control_tokens(row.messages)
                for image in row.images:
                    if not Path(image.path).is_file() or sha256_file(Path(image.path)) != image.sha256:
                        raise ValueError(f"image {Path(image.path).name} is missing or changed")
            except ValueError as exc:
                problems.append({"index": row.id, "reason": str(exc)})
        report["problems"] = problems
    return report


def _sharegpt_file(path: Path, images_root: Path | None) -> dict[str, Any]:
    from gensearcher.train.dataset import summary
    from gensearcher.train.sharegpt import import_sharegpt

    with tempfile.TemporaryDirectory() as scratch:
        manifest, rows = import_sharegpt(path, Path(scratch) / "check", images_root=images_root, max_pixels=160_000)
    return {"kind": "sharegpt", **summary(rows),
            "problems": [{"index": s.index, "reason": s.reason} for s in manifest.skipped]}


def _rl_folder(path: Path) -> dict[str, Any]:
    from gensearcher.train.rl_data import read_rl

    manifest, splits = read_rl(path)
    problems = [{"index": f"{split}:{task.id}", "reason": "gt_image missing"}
                for split, tasks in splits.items() for task in tasks if not task.gt_image or not Path(task.gt_image).is_file()]
    return {"kind": "rl", "seed": manifest.seed, "test_ratio": manifest.test_ratio,
            **{split: len(tasks) for split, tasks in splits.items()}, "skipped_at_import": len(manifest.skipped),
            "problems": problems}


def _rl_file(path: Path) -> dict[str, Any]:
    from gensearcher.train.rl_data import import_rl as run

    with tempfile.TemporaryDirectory() as scratch:
        manifest = run(path, Path(scratch), test_ratio=0.0)
    return {"kind": "rl-file", "items": manifest.train, "problems": [{"index": s.index, "reason": s.reason}
                                                                    for s in manifest.skipped]}
