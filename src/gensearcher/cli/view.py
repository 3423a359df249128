"""`gensearcher view RUN_DIR... [--port P] [--token] [--export DIR]`."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import typer

from gensearcher.cli import _guarded, app


@app.command()
def view(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run folders: research, generate, eval, run or training.")],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    host: Annotated[str, typer.Option(help="Bind address (another than 127.0.0.1 exposes your runs).")] = "127.0.0.1",
    token: Annotated[bool, typer.Option("--token", help="Require a random token (printed in the link).")] = False,
    export: Annotated[Path | None, typer.Option(help="Write the pages as a static site into DIR instead.")] = None,
    data_root: Annotated[list[Path] | None, typer.Option(help="Also serve images from DIR (e.g. ground truth).")] = None,
) -> None:
    """Browse runs: items, every research round, generated vs ground truth, judge scores, comparisons.

    Examples:
        gensearcher view runs/kg-base runs/kg
        gensearcher view runs/kg --export site/ && xdg-open site/index.html
    """

    def body() -> int:
        from gensearcher.viewer import RunIndex

        index = RunIndex(run_dirs)
        try:
            if export is not None:
                from gensearcher.viewer.export import export_site

                typer.echo(str(export_site(index, export)))
                return 0
            import uvicorn

            from gensearcher.viewer.app import build_app

            secret = secrets.token_urlsafe(24) if token else None
            roots = [Path(p) for p in data_root or []]
            typer.echo(f"gensearcher view: http://{host}:{port}/" + (f"?token={secret}" if secret else ""))
            uvicorn.run(build_app(index, token=secret, data_roots=roots), host=host, port=port,
                        log_level="warning", access_log=False)
            return 0
        finally:
            index.close()

    raise typer.Exit(_guarded(body))
