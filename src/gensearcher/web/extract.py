"""Main text of fetched documents: HTML through trafilatura, PDF through pypdf, plain text as is."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser

from gensearcher.errors import ToolError

HTML_TYPES = {"text/html", "application/xhtml+xml", ""}
TEXT_TYPES = {"text/plain", "text/markdown", "application/json"}


def extract_text(body: bytes, content_type: str, url: str = "") -> tuple[str, str]:
    """(title, main text) of a document. Raises ToolError for types we cannot read."""
    if content_type == "application/pdf" or body[:5] == b"%PDF-":
        return pdf_text(body)
    if content_type in TEXT_TYPES:
        return "", body.decode("utf-8", errors="replace")
    if content_type in HTML_TYPES or content_type.startswith("text/"):
        return html_text(body.decode("utf-8", errors="replace"), url)
    raise ToolError(f"cannot read a {content_type} document")


def html_text(html: str, url: str = "") -> tuple[str, str]:
    import trafilatura

    # No deduplicate=True: trafilatura keeps a process-wide cache for it, so a second read of the same page
    # would come back empty and break replay.
    text = trafilatura.extract(html, url=url or None, include_comments=False, include_tables=True,
                               favor_recall=True) or ""
    title = ""
    metadata = trafilatura.extract_metadata(html)
    if metadata is not None and metadata.title:
        title = metadata.title
    if not text.strip():
        # Pages that are mostly markup (short pages, listings): fall back to all visible text.
        title_, text, _ = visible_html_text(html)
        title = title or title_
    return title, re.sub(r"\n{3,}", "\n\n", text).strip()


def pdf_text(body: bytes) -> tuple[str, str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(body))
        title = (reader.metadata.title if reader.metadata and reader.metadata.title else "") or ""
        pages = [page.extract_text() or "" for page in reader.pages[:200]]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise ToolError(f"cannot read the PDF: {exc}") from None
    return str(title), "\n\n".join(page.strip() for page in pages if page.strip())


def visible_html_text(html: str) -> tuple[str, str, list[tuple[str, str]]]:
    """(title, visible text, [(img src, alt)]) with the standard library's parser: no scripts or styles."""
    parser = _TextExtractor()
    parser.feed(html)
    text = re.sub(r"\n{3,}", "\n\n", "".join(parser.parts)).strip()
    return parser.title.strip(), text, parser.images


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
