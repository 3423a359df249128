"""The `local` backend: search and image search over a folder of the user's own documents and images.

No network at all, so the agent can research a private corpus (and the demo runs offline). Documents
(.txt, .md, .html, .pdf) and images (.jpg, .png, .webp, .gif) are indexed with SQLite FTS5. Images are
matched on their file name, on a caption from an optional `captions.json` ({"relative/path.jpg":
"caption"}), and on the alt text and title of pages that embed them. `gensearcher index build DIR` writes
the index to `DIR/.gensearcher-index.sqlite`; without it the index is built in memory when opened.
`browse` reads `file://` URLs inside the corpus only.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

from gensearcher.errors import ToolError, UserError
from gensearcher.tools.base import ImageCandidate, WebHit
from gensearcher.web.extract import pdf_text, visible_html_text

DOC_SUFFIXES = {".txt", ".md", ".html", ".htm", ".pdf"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif"}
INDEX_NAME = ".gensearcher-index.sqlite"
_WORD = re.compile(r"\w+", re.U)
_SCHEMA = (
    "CREATE VIRTUAL TABLE docs USING fts5(path UNINDEXED, title, body, tokenize='porter unicode61')",
    "CREATE VIRTUAL TABLE images USING fts5(path UNINDEXED, title, body, tokenize='porter unicode61')",
)


def build_index(root: Path, target: Path | None = None) -> tuple[Path, int, int]:
    """Index `root` into an SQLite file (default `root/.gensearcher-index.sqlite`).

    Returns (index path, documents, images). The file is replaced atomically.
    """
    if not root.is_dir():
        raise UserError(f"corpus folder not found: {root}")
    target = target or root / INDEX_NAME
    tmp = target.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    docs, images = _fill(db, root.resolve())
    db.close()
    tmp.replace(target)
    return target, docs, images


def _fill(db: sqlite3.Connection, root: Path) -> tuple[int, int]:
    for statement in _SCHEMA:
        db.execute(statement)
    captions = _read_captions(root / "captions.json")
    alt_texts: dict[Path, list[str]] = {}
    image_paths: list[Path] = []
    documents = 0
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith(".") or not _inside(path, root):
            continue
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            image_paths.append(path)
        elif suffix in DOC_SUFFIXES:
            try:
                title, body, embedded = read_document(path)
            except ToolError:
                continue  # an unreadable PDF must not stop the index
            db.execute("INSERT INTO docs VALUES (?, ?, ?)", (str(path), title, body))
            documents += 1
            for src, alt in embedded:
                target = (path.parent / unquote(src)).resolve()
                alt_texts.setdefault(target, []).append(f"{alt} {title}")
    for path in image_paths:
        caption = captions.get(path.relative_to(root).as_posix(), "")
        words = " ".join(_WORD.findall(path.stem.replace("_", " ")))
        body = " ".join([caption, words, *alt_texts.get(path.resolve(), [])])
        db.execute("INSERT INTO images VALUES (?, ?, ?)", (str(path), caption or words, body))
    db.commit()
    return documents, len(image_paths)


def _inside(path: Path, root: Path) -> bool:
    """Whether `path`, symlinks followed, stays inside `root`: the same rule `read` (browse) applies, so the
    index never lists, and image search never copies, a file the corpus does not hold."""
    try:
        return path.resolve(strict=True).is_relative_to(root)
    except (OSError, RuntimeError):  # a dangling link or a loop
        return False


class LocalCorpus:
    """A `SearchBackend` over an indexed folder, plus `read(url)` for browse."""

    name = "local"

    def __init__(self, root: Path):
        if not root.is_dir():
            raise UserError(f"local corpus folder not found: {root}")
        self.root = root.resolve()
        index = self.root / INDEX_NAME
        if index.is_file():
            self._db = sqlite3.connect(f"file:{index}?mode=ro", uri=True, check_same_thread=False)
        else:
            self._db = sqlite3.connect(":memory:", check_same_thread=False)
            _fill(self._db, self.root)

    def _match(self, table: str, query: str, limit: int) -> list[tuple[str, str, str]]:
        terms = _WORD.findall(query.lower())
        if not terms:
            return []
        match = " OR ".join(f'"{term}"' for term in terms)
        sql = (f"SELECT path, title, snippet({table}, 2, '', '', ' ... ', 24) FROM {table} "
               f"WHERE {table} MATCH ? ORDER BY bm25({table}) LIMIT ?")
        return list(self._db.execute(sql, (match, limit)))

    async def search(self, query: str, top_k: int, used: list[str]) -> list[WebHit]:
        return [WebHit(title=title, url=Path(path).as_uri(), snippet=snippet)
                for path, title, snippet in self._match("docs", query, top_k)]

    async def images(self, query: str, count: int, used: list[str]) -> list[ImageCandidate]:
        return [ImageCandidate(image_url=Path(path).as_uri(), title=title, local_path=path)
                for path, title, _ in self._match("images", query, count)]

    def read(self, url: str) -> tuple[str, str]:
        """(title, text) of a corpus document given as a file:// URL or a path relative to the corpus."""
        parsed = urlparse(url)
        missing = ToolError(f"the local corpus has no page {url}; use a url from the search results")
        if parsed.scheme not in ("", "file"):
            raise missing
        path = Path(unquote(parsed.path))
        path = (path if path.is_absolute() else self.root / path).resolve()
        if not path.is_relative_to(self.root) or not path.is_file() or path.suffix.lower() not in DOC_SUFFIXES:
            raise missing
        title, text, _ = read_document(path)
        return title, text


def read_document(path: Path) -> tuple[str, str, list[tuple[str, str]]]:
    """(title, text, [(img src, alt)]) of a text, Markdown, HTML or PDF file."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        title, text = pdf_text(path.read_bytes())
        return title or path.stem.replace("_", " "), text, []
    raw = path.read_text(encoding="utf-8", errors="replace")
    if suffix in (".html", ".htm"):
        title, text, images = visible_html_text(raw)
        return (title or path.stem), text, images
    heading = next((line.lstrip("# ").strip() for line in raw.splitlines() if line.startswith("#")), "")
    return heading or path.stem.replace("_", " "), raw.strip(), []


def _read_captions(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must map image paths to captions")
    return {str(key): str(value) for key, value in data.items()}
