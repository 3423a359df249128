"""The generator interface: `generate(GenerationRequest) -> GenerationResult`.

A request carries the prompt and the reference images in the order the answer lists them. A backend that
takes fewer references than the request has keeps the first ones and says which it dropped and why; the
reference system silently dropped the fourth and fifth.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field

from gensearcher.data.records import DroppedReference, ReferenceImage

# The reference system's /generate API defaults (edit model with references; Qwen-Image for text only), which
# the http backend sends. The diffusers backend takes each model's own values from its preset instead.
EDIT_STEPS = 40
TEXT_STEPS = 50
TRUE_CFG_SCALE = 4.0
EDIT_GUIDANCE = 1.0
NEGATIVE_PROMPT = " "


class GenerationRequest(BaseModel):
    """One image to make. The generation fields left None take the model's preset value (diffusers) or the
    reference /generate API default (http)."""

    prompt: str = Field(..., min_length=1)
    reference_images: list[str] = Field([], description="Local image files, in the answer's order.")
    seed: int = 0
    steps: int | None = Field(None, ge=1, le=500, description="Denoising steps.")
    true_cfg_scale: float | None = Field(None, ge=0, description="True classifier-free guidance.")
    guidance_scale: float | None = Field(None, ge=0, description="The pipeline's guidance_scale.")
    negative_prompt: str | None = None
    width: int | None = Field(None, ge=16, le=8192)
    height: int | None = Field(None, ge=16, le=8192)

    def explicit(self) -> dict[str, Any]:
        """The generation fields as set (None: unset), by our names; the diffusers backend's input."""
        return {name: getattr(self, name) for name in
                ("seed", "steps", "true_cfg_scale", "guidance_scale", "negative_prompt", "width", "height")}

    def resolved(self, *, with_references: bool) -> dict[str, Any]:
        """The fields with the reference /generate API's defaults filled in (what the http backend sends)."""
        return {
            "seed": self.seed,
            "steps": self.steps or (EDIT_STEPS if with_references else TEXT_STEPS),
            "true_cfg_scale": self.true_cfg_scale if self.true_cfg_scale is not None else TRUE_CFG_SCALE,
            "guidance_scale": self.guidance_scale if self.guidance_scale is not None else (EDIT_GUIDANCE if with_references else None),
            "negative_prompt": self.negative_prompt if self.negative_prompt is not None else NEGATIVE_PROMPT,
            "width": self.width,
            "height": self.height,
        }


def request_defaults(config: Any) -> dict[str, Any]:
    """Request fields set in the generator configuration (None: unset)."""
    return {name: getattr(config, name) for name in
            ("steps", "width", "height", "seed", "true_cfg_scale", "guidance_scale", "negative_prompt")}


def answer_request(config: Any, prompt: str, references: Sequence[ReferenceImage]) -> GenerationRequest:
    """The request that renders a research answer: its prompt, its references' files in order, and the
    generation fields set in the generator configuration (`gensearcher run` and the RL reward alike)."""
    defaults = {k: v for k, v in request_defaults(config).items() if v is not None}
    return GenerationRequest(prompt=prompt, reference_images=[r.local_path for r in references], **defaults)


class GenerationResult(BaseModel):
    """One generated image and exactly how it was made."""

    image_png: bytes = Field(..., repr=False, description="PNG bytes (a vendor's JPEG or WebP is re-encoded).")
    width: int
    height: int
    backend: str
    model: str | None = None
    used_images: list[str] = Field([], description="The references that went in, in order.")
    dropped_references: list[DroppedReference] = []
    parameters: dict[str, Any] = Field(
        {}, description="diffusers: the keyword arguments of the pipeline call (images as their paths, the "
        "generator as its seed); http and vendors: the request body's generation fields.")
    pipeline_settings: dict[str, Any] = Field(
        {}, description="What else shaped the call: pipeline class, preset, Qwen edit resize targets.")
    source_format: str = Field("png", description="The format the backend delivered (jpeg, webp, png).")
    seconds: float = 0.0

    def save(self, path: Path) -> Path:
        from gensearcher._files import write_atomic

        write_atomic(path, self.image_png)
        return path


class Generator(Protocol):
    """An image generator backend. Chosen by name in `gensearcher.generate.build_generator`."""

    name: str
    max_references: int

    async def generate(self, request: GenerationRequest) -> GenerationResult: ...

    async def aclose(self) -> None: ...


def split_references(request: GenerationRequest, limit: int) -> tuple[list[str], list[DroppedReference]]:
    """The references a backend keeps (the first `limit`) and the ones it drops, with the reason."""
    kept = request.reference_images[:limit]
    dropped = [
        DroppedReference(index=i, path=path, reason=f"this backend takes at most {limit} reference image(s)")
        for i, path in enumerate(request.reference_images) if i >= limit
    ]
    return kept, dropped


def png_bytes(image: Any) -> tuple[bytes, int, int]:
    """PNG bytes and size of a PIL image."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), image.width, image.height


def image_info(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.width, image.height


MAX_RESULT_PIXELS = 40_000_000  # above any vendor's 4K output; a larger answer is a decompression bomb


def as_png(data: bytes, *, max_pixels: int = MAX_RESULT_PIXELS) -> tuple[bytes, int, int, str]:
    """(PNG bytes, width, height, delivered format) of image bytes from a backend. A PNG is kept byte for
    byte; JPEG, WebP and the rest are decoded and re-encoded losslessly as PNG, so every saved `.png` is one.
    Raises GenerationError for bytes that are not a decodable image."""
    from PIL import Image

    from gensearcher.errors import GenerationError
    from gensearcher.images import sniff_image_type

    kind = sniff_image_type(data)
    if kind is None:
        raise GenerationError("the generator sent something that is not an image")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > max_pixels:
                raise GenerationError(f"the generated image is too large ({image.width}x{image.height})")
            image.load()
            if kind == "png":
                return data, image.width, image.height, kind
            converted = image if image.mode in ("RGB", "RGBA", "L", "LA") else image.convert("RGBA" if "A" in image.mode else "RGB")
            encoded, width, height = png_bytes(converted)
            return encoded, width, height, kind
    except GenerationError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise GenerationError(f"the generated {kind} image cannot be decoded: {exc}") from None
