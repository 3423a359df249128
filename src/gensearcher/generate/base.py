"""The generator interface: `generate(GenerationRequest) -> GenerationResult`.

A request carries the prompt and the reference images in the order the answer lists them. A backend that
takes fewer references than the request has keeps the first ones and says which it dropped and why; the
reference system silently dropped the fourth and fifth.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field

from gensearcher.data.records import DroppedReference

# The reference system's defaults (edit model with references; Qwen-Image for text only).
EDIT_STEPS = 40
TEXT_STEPS = 50
TRUE_CFG_SCALE = 4.0
EDIT_GUIDANCE = 1.0
NEGATIVE_PROMPT = " "


class GenerationRequest(BaseModel):
    prompt: str = Field(..., min_length=1)
    reference_images: list[str] = Field([], description="Local image files, in the answer's order.")
    seed: int = 0
    steps: int | None = Field(None, ge=1, le=500, description=f"Default {EDIT_STEPS} with references, {TEXT_STEPS} without.")
    true_cfg_scale: float = Field(TRUE_CFG_SCALE, ge=0)
    guidance_scale: float | None = Field(None, ge=0, description=f"Default {EDIT_GUIDANCE} with references.")
    negative_prompt: str = NEGATIVE_PROMPT
    width: int | None = Field(None, ge=16, le=8192)
    height: int | None = Field(None, ge=16, le=8192)

    def resolved(self, *, with_references: bool) -> dict[str, Any]:
        """The parameters a backend actually uses."""
        return {
            "seed": self.seed,
            "steps": self.steps or (EDIT_STEPS if with_references else TEXT_STEPS),
            "true_cfg_scale": self.true_cfg_scale,
            "guidance_scale": self.guidance_scale if self.guidance_scale is not None else (EDIT_GUIDANCE if with_references else None),
            "negative_prompt": self.negative_prompt,
            "width": self.width,
            "height": self.height,
        }


def request_defaults(config: Any) -> dict[str, Any]:
    """Request fields set in the generator configuration (steps, size, seed)."""
    return {"steps": config.steps, "width": config.width, "height": config.height, "seed": config.seed}


class GenerationResult(BaseModel):
    image_png: bytes = Field(..., repr=False)
    width: int
    height: int
    backend: str
    model: str | None = None
    used_images: list[str] = []
    dropped_references: list[DroppedReference] = []
    parameters: dict[str, Any] = {}
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
