"""Image files for the policy: decode, cap the pixel count, store content-addressed."""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path
from typing import Any

from gensearcher._files import write_atomic
from gensearcher.errors import ToolError
from gensearcher.messages import ImageRef

# Decompression-bomb guard for files we open ourselves (the fetcher enforces its own caps on downloads).
_MAX_SOURCE_PIXELS = 64_000_000


def fit_to_pixels(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest size with the same aspect ratio and at most `max_pixels` pixels (never upscales)."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))


def prepare_for_policy(source: Path, store_dir: Path, max_pixels: int) -> ImageRef:
    """Decode `source`, resize it to the pixel cap, and store it as `<store_dir>/<sha256>.jpg`.

    The stored file is exactly what every policy backend sends, so a trajectory records the pixels the
    model saw. The same picture always maps to the same file.
    """
    from PIL import Image

    try:
        with Image.open(source) as image:
            if image.width * image.height > _MAX_SOURCE_PIXELS:
                raise ToolError(f"image {source.name} is too large ({image.width}x{image.height})")
            image = _to_rgb(image)
            size = fit_to_pixels(image.width, image.height, max_pixels)
            if size != (image.width, image.height):
                image = image.resize(size, Image.Resampling.BICUBIC)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=95)
    except ToolError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ToolError(f"cannot read image {source.name}: {exc}") from None
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    target = store_dir / f"{digest}.jpg"
    if not target.exists():
        write_atomic(target, data)
    return ImageRef(path=str(target.resolve()), sha256=digest, width=size[0], height=size[1])


def _to_rgb(image: Any) -> Any:
    from PIL import Image

    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    # No copy of an image that is RGB already: for a large picture that copy was the peak of the decode.
    return image if image.mode == "RGB" else image.convert("RGB")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}
MIN_SIDE = 16  # smaller pictures are tracking pixels and icons, useless as references


def sniff_image_type(data: bytes) -> str | None:
    """The image format from the file's first bytes (magic numbers), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    return None


DEFAULT_MAX_PIXELS = 16_777_216  # 4096x4096: four times what is stored (stored_pixels), so room to downscale well
BYTES_PER_DECODED_PIXEL = 8  # RGBA decode + RGB composite + resize output: measured peak of one store_image_bytes


def _decode_size(image: Any, stored_pixels: int) -> tuple[int, int]:
    """The size the decoder will produce: JPEG decodes downscaled (DCT scaling) towards the stored size."""
    if image.format == "JPEG":
        target = fit_to_pixels(image.width, image.height, stored_pixels)
        scale = 1
        while scale < 8 and image.width // (scale * 2) >= target[0] and image.height // (scale * 2) >= target[1]:
            scale *= 2
        return -(-image.width // scale), -(-image.height // scale)
    return image.width, image.height


def _check_declared(image: Any, kind: str, max_pixels: int, stored_pixels: int) -> tuple[int, int]:
    """The decoded size, after refusing what would decode to more than `max_pixels` (the bomb guard)."""
    if image.format == "JPEG" and image.width * image.height > _MAX_SOURCE_PIXELS:
        raise ToolError(f"image too large ({image.width}x{image.height} pixels)")
    width, height = _decode_size(image, stored_pixels)
    if width * height > max_pixels:
        raise ToolError(f"image too large ({image.width}x{image.height} pixels)")
    return width, height


def image_decode_cost(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, stored_pixels: int = 4_194_304) -> int:
    """Bytes of memory `store_image_bytes` will need for `data`, from the header alone (no decoding).

    Raises ToolError for what `store_image_bytes` would refuse before decoding, so callers can hold a
    memory budget for exactly the decodes that will happen.
    """
    from PIL import Image

    kind = sniff_image_type(data)
    if kind is None:
        raise ToolError("not an image (unknown file signature)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = _check_declared(image, kind, max_pixels, stored_pixels)
    except ToolError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ToolError(f"the {kind} data does not decode: {type(exc).__name__}") from None
    return width * height * BYTES_PER_DECODED_PIXEL


def store_image_bytes(data: bytes, store_dir: Path, *, declared_type: str = "", max_pixels: int = DEFAULT_MAX_PIXELS,
                      stored_pixels: int = 4_194_304) -> ImageRef:
    """Validate downloaded image bytes and store them re-encoded, content-addressed.

    Checks, in order: the declared content type, the magic bytes, the pixel count the decoder will produce
    (before decoding: the decompression-bomb guard; JPEG decodes downscaled towards `stored_pixels`, so a
    large photo costs little), a full decode, a minimum size. The file is named after the sha256 of the
    downloaded bytes, so the same picture under two URLs is stored once.
    """
    from PIL import Image

    if declared_type and not declared_type.startswith("image/") and declared_type not in _GENERIC_TYPES:
        raise ToolError(f"declared as {declared_type}, not an image")
    kind = sniff_image_type(data)
    if kind is None:
        raise ToolError("not an image (unknown file signature)")
    digest = hashlib.sha256(data).hexdigest()
    target = store_dir / digest[:2] / f"{digest}.jpg"
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_declared(image, kind, max_pixels, stored_pixels)
            if min(image.width, image.height) < MIN_SIDE:
                raise ToolError(f"image too small ({image.width}x{image.height} pixels)")
            if target.exists():
                with Image.open(target) as stored:
                    return ImageRef(path=str(target.resolve()), sha256=digest, width=stored.width, height=stored.height)
            if image.format == "JPEG":
                image.draft("RGB", fit_to_pixels(image.width, image.height, stored_pixels))
            image.load()
            rgb = _to_rgb(image)
            size = fit_to_pixels(rgb.width, rgb.height, stored_pixels)
            if size != rgb.size:
                # reducing_gap: shrink by whole factors first (cheap), then filter at about the final size.
                rgb = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
            buffer = io.BytesIO()
            rgb.save(buffer, format="JPEG", quality=92)
    except ToolError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ToolError(f"the {kind} data does not decode: {type(exc).__name__}") from None
    write_atomic(target, buffer.getvalue())
    return ImageRef(path=str(target.resolve()), sha256=digest, width=size[0], height=size[1])
