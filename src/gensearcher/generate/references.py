"""Reference images for a generation request: read, checked, as PIL images or encoded bytes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from gensearcher.errors import GenerationError


def load_references(paths: list[str]) -> list[Any]:
    """Open every reference as RGB. A missing or unreadable file is an error for the item, never a silent
    fall-back to text only (the reference system's defect)."""
    from PIL import Image

    images = []
    for path in paths:
        if not Path(path).is_file():
            raise GenerationError(f"reference image not found: {path}")
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except OSError as exc:
            raise GenerationError(f"reference image {path} cannot be read: {exc}") from None
    return images


def jpeg_bytes(image: Any, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def png_bytes_of(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
