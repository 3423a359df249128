"""Which files the viewer may serve, and their thumbnails.

Only files inside the folders given (the run folders, plus any `--data-root` for ground truth kept
elsewhere) are served. A request names a root by number and a path inside it; the path is refused when it
is absolute, has a `..` part (also after a second round of percent-decoding), a backslash or a NUL, or
when, with every symlink resolved, it lands outside its root.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote

from gensearcher.errors import GenSearcherError

THUMB_PX = 320


class Refused(GenSearcherError):
    """A file request outside the served folders (answered 404, saying nothing of what exists)."""


class FileRoots:
    """The folders files may come from, numbered as in the URLs."""

    def __init__(self, roots: list[Path]):
        self.roots = [Path(root).resolve() for root in roots]

    def locate(self, path: str | None) -> tuple[int, str] | None:
        """The root number and relative path of a file named in a record, or None when it is outside."""
        if not path:
            return None
        try:
            resolved = Path(path).resolve()
        except (OSError, RuntimeError, ValueError):
            return None
        for key, root in enumerate(self.roots):
            if resolved.is_relative_to(root) and resolved.is_file():
                return key, resolved.relative_to(root).as_posix()
        return None

    def url(self, prefix: str, path: str | None) -> str | None:
        found = self.locate(path)
        return f"{prefix}/{found[0]}/{quote(found[1])}" if found else None

    def open(self, key: int, relative: str) -> Path:
        """The file `relative` inside root `key`, or Refused."""
        if not 0 <= key < len(self.roots):
            raise Refused("no such root")
        for text in (relative, unquote(relative)):
            posix = PurePosixPath(text)
            if (not text or posix.is_absolute() or "\\" in text or "\x00" in text or ".." in posix.parts
                    or (len(text) > 1 and text[1] == ":")):
                raise Refused("path refused")
        root = self.roots[key]
        try:
            resolved = (root / relative).resolve(strict=True)
        except (OSError, RuntimeError):
            raise Refused("not found") from None
        if not resolved.is_relative_to(root) or not resolved.is_file():
            raise Refused("path refused")
        return resolved


def thumbnail(source: Path, folder: Path, size: int = THUMB_PX) -> Path:
    """A JPEG thumbnail of `source` in `folder`, made once per file version (named by path and mtime)."""
    from PIL import Image

    stat = source.stat()
    name = hashlib.sha256(f"{source}|{stat.st_mtime_ns}|{stat.st_size}|{size}".encode()).hexdigest()[:24] + ".jpg"
    target = folder / name
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with Image.open(source) as image:
            image.draft("RGB", (size, size))
            picture = image.convert("RGB")
            picture.thumbnail((size, size))
            partial = target.with_suffix(".part")
            picture.save(partial, format="JPEG", quality=85)
            partial.replace(target)
    return target
