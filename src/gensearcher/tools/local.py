"""The `local` backend: the three tools over a folder of the user's own documents and images.

No network at all, so the agent can research a private corpus (and the demo runs offline). Documents
(.txt, .md, .html) and images (.jpg, .png, .webp, .gif) are indexed in an in-memory SQLite FTS5 table
when the corpus is opened. Images are matched on their file name, on a caption from an optional
`captions.json` ({"relative/path.jpg": "caption"}), and on the alt text of pages that embed them.
`browse` reads only files inside the corpus folder.
"""

from __future__ import annotations

import json
import re
import sqlite3
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

from gensearcher.errors import ToolError, UserError
from gensearcher.images import sha256_file
from gensearcher.tools.base import BrowseArgs, ImageHit, ImageSearchArgs, SearchArgs, ToolResult

DOC_SUFFIXES = {".txt", ".md", ".html", ".htm"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif"}
_WORD = re.compile(r"\w+", re.U)


class LocalCorpus:
    """An indexed folder. `search`, `image_search` and `browse` are the tool implementations."""

    def __init__(self, root: Path, *, max_browse_chars: int = 20_000):
        if not root.is_dir():
            raise UserError(f"local corpus folder not found: {root}")
        self.root = root.resolve()
        self.max_browse_chars = max_browse_chars
        self._db = sqlite3.connect(":memory:")
        self._db.execute("CREATE VIRTUAL TABLE docs USING fts5(path UNINDEXED, title, body, tokenize='porter unicode61')")
        self._db.execute("CREATE VIRTUAL TABLE images USING fts5(path UNINDEXED, title, body, tokenize='porter unicode61')")
        self._index()

    def _index(self) -> None:
        captions = _read_captions(self.root / "captions.json")
        alt_texts: dict[Path, list[str]] = {}
        image_paths: list[Path] = []
        for path in sorted(self.root.rglob("*")):
            if not path.is_file():
                continue
            suffix = path.suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                image_paths.append(path)
            elif suffix in DOC_SUFFIXES:
                title, body, images = read_document(path)
                self._db.execute("INSERT INTO docs VALUES (?, ?, ?)", (str(path), title, body))
                for src, alt in images:
                    target = (path.parent / unquote(src)).resolve()
                    alt_texts.setdefault(target, []).append(f"{alt} {title}")
        for path in image_paths:
            relative = path.relative_to(self.root).as_posix()
            caption = captions.get(relative, "")
            words = " ".join(_WORD.findall(path.stem.replace("_", " ")))
            body = " ".join([caption, words, *alt_texts.get(path.resolve(), [])])
            self._db.execute("INSERT INTO images VALUES (?, ?, ?)", (str(path), caption or words, body))
        self._db.commit()

    def _match(self, table: str, query: str, limit: int) -> list[tuple[str, str, str]]:
        terms = _WORD.findall(query.lower())
        if not terms:
            return []
        match = " OR ".join(f'"{term}"' for term in terms)
        sql = (f"SELECT path, title, snippet({table}, 2, '', '', ' ... ', 24) FROM {table} "
               f"WHERE {table} MATCH ? ORDER BY bm25({table}) LIMIT ?")
        return list(self._db.execute(sql, (match, limit)))

    async def search(self, args: SearchArgs) -> ToolResult:
        blocks = []
        for query in args.queries:
            hits = self._match("docs", query, args.top_k)
            lines = [f"[{title}]({Path(path).as_uri()}) {' '.join(snippet.split())}" for path, title, snippet in hits]
            body = "\n\n".join(lines) if lines else f"No results for '{query}'."
            blocks.append(f"--- search result for [{query}] ---\n{body}\n--- end of search result ---")
        return ToolResult(text="\n\n".join(blocks))

    async def image_search(self, args: ImageSearchArgs) -> ToolResult:
        hits = [
            ImageHit(local_path=path, url=Path(path).as_uri(), title=title, sha256=sha256_file(Path(path)))
            for path, title, _ in self._match("images", args.query, args.top_k)
        ]
        if not hits:
            return ToolResult(text=f"No images found for '{args.query}'. Try a shorter query of two or three words.")
        return ToolResult(images=hits)

    async def browse(self, args: BrowseArgs) -> ToolResult:
        path = self._resolve(args.url)
        title, body, _ = read_document(path)
        text = body[: self.max_browse_chars]
        note = "" if len(body) <= self.max_browse_chars else f"\n[truncated: the page has {len(body)} characters]"
        return ToolResult(text=f"Page: {title}\nLooking for: {args.query}\n\n{text}{note}")

    def _resolve(self, url: str) -> Path:
        parsed = urlparse(url)
        if parsed.scheme not in ("", "file"):
            raise ToolError(f"the local corpus has no page {url}; use a url from the search results")
        path = Path(unquote(parsed.path))
        path = (path if path.is_absolute() else self.root / path).resolve()
        if not path.is_relative_to(self.root) or not path.is_file() or path.suffix.lower() not in DOC_SUFFIXES:
            raise ToolError(f"the local corpus has no page {url}; use a url from the search results")
        return path


def read_document(path: Path) -> tuple[str, str, list[tuple[str, str]]]:
    """(title, text, [(img src, alt)]) of a text, Markdown or HTML file."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() in (".html", ".htm"):
        parser = _TextExtractor()
        parser.feed(raw)
        text = re.sub(r"\n{3,}", "\n\n", "".join(parser.parts)).strip()
        return (parser.title.strip() or path.stem), text, parser.images
    heading = next((line.lstrip("# ").strip() for line in raw.splitlines() if line.startswith("#")), "")
    return heading or path.stem.replace("_", " "), raw.strip(), []


class _TextExtractor(HTMLParser):
    _SKIP = frozenset({"script", "style", "noscript", "template", "svg"})
    _BLOCK = frozenset({"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self.images: list[tuple[str, str]] = []
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "img":
            attributes = dict(attrs)
            if attributes.get("src"):
                self.images.append((attributes["src"] or "", attributes.get("alt") or ""))
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skipping:
            self.parts.append(data)


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
