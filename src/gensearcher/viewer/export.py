"""`gensearcher view --export DIR`: the viewer's pages as a static site (and the `eval` report).

The same templates as the server, with links to files: index.html (runs), items-K.html (every item of run K,
filtered and sorted in the page by view.js), item-K-ID.html, compare-A-B[-flipped].html, the images the
pages show under files/ (full size) and thumbs/ (small). Images are copied, so the folder can be zipped
and opened anywhere without a server; only files that open as images are copied.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from gensearcher._files import write_atomic
from gensearcher.agent.batch import trajectory_filename
from gensearcher.viewer.files import thumbnail
from gensearcher.viewer.pages import Pages
from gensearcher.viewer.runs import Query, RunIndex

STATIC = Path(__file__).parent / "static"


def page_name(kind: str, *parts: Any) -> str:
    return "-".join([kind, *(str(p) for p in parts)]) + ".html"


class ExportLinks:
    """Links between the files of an export; images are copied in as they are linked."""

    static_site = True

    def __init__(self, out: Path):
        self.out = out
        self._copied: dict[tuple[str, str], str | None] = {}

    def runs(self) -> str:
        return "index.html"

    def items(self, run: int, **params: Any) -> str:
        return page_name("items", run)

    def item(self, run: int, item_id: str) -> str:
        return page_name("item", run, trajectory_filename(item_id)[:-5])

    def compare(self, a: int, b: int, **params: Any) -> str:
        only = params.get("only")
        return page_name("compare", a, b, *([only] if only else []))

    def live(self, run: int) -> str | None:
        return None  # a static site does not change

    def image(self, path: str | None) -> str | None:
        return self._copy(path, "files")

    def thumb(self, path: str | None) -> str | None:
        return self._copy(path, "thumbs")

    def asset(self, name: str) -> str:
        return name

    def _copy(self, path: str | None, kind: str) -> str | None:
        if not path:
            return None
        if (path, kind) not in self._copied:
            self._copied[(path, kind)] = self._make(Path(path), kind)
        return self._copied[(path, kind)]

    def _make(self, source: Path, kind: str) -> str | None:
        from PIL import Image

        try:
            if not source.is_file():
                return None
            with Image.open(source) as image:
                image.verify()
            if kind == "thumbs":
                return f"thumbs/{thumbnail(source, self.out / 'thumbs').name}"
            digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:24]
            target = self.out / "files" / f"{digest}{source.suffix.lower()}"
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                shutil.copyfile(source, target)
            return f"files/{target.name}"
        except (OSError, SyntaxError, ValueError):
            return None


def export_site(index: RunIndex, out: Path) -> Path:
    """Write every page of the runs in `index` into `out`; returns out/index.html."""
    out.mkdir(parents=True, exist_ok=True)
    links = ExportLinks(out)
    pages = Pages(index)

    def write(name: str, html: str) -> None:
        write_atomic(out / name, html.encode("utf-8"), fsync=False)

    write("index.html", pages.runs_page(links))
    for info in index.runs():
        write(links.items(info.key), pages.items_page(links, info.key, Query(per_page=max(info.items, 1))))
        for item_id in index.all_ids(info.key):
            html = pages.item_page(links, info.key, item_id)
            if html is not None:
                write(links.item(info.key, item_id), html)
    for b in range(1, len(index.roots)):
        for only in ("", "flipped", "improved", "regressed"):
            write(links.compare(0, b, only=only),
                  pages.compare_page(links, 0, b, only=only, per_page=max(index.run(b).items, 1)))
    shutil.copyfile(STATIC / "view.js", out / "view.js")
    return out / "index.html"


def export_runs(run_dirs: list[Path], out: Path) -> Path:
    """Index `run_dirs` and export them into `out` (the `eval` report and `view --export`)."""
    index = RunIndex(run_dirs)
    try:
        return export_site(index, out)
    finally:
        index.close()
