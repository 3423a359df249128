"""Gemini image generation ("Nano Banana", Nano Banana Pro) through `generateContent`, with the references
as inline images after the text.

Default model: the reference system's `gemini-3-pro-image-preview` (Nano Banana Pro). `generator.api_size`
(1K, 2K, 4K) becomes `imageConfig.imageSize`; width and height become the nearest aspect ratio. The image
part is checked like every other backend's answer and kept as PNG (a JPEG part is re-encoded and recorded).
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

from gensearcher.errors import GenerationError
from gensearcher.generate._api import ApiGenerator, checked_image, data_url_of
from gensearcher.generate.base import GenerationRequest, GenerationResult, split_references

DEFAULT_BASE = "https://generativelanguage.googleapis.com/v1beta"
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")


class GeminiGenerator(ApiGenerator):
    name = "gemini"
    DEFAULT_BASE = DEFAULT_BASE

    @staticmethod
    def auth_headers(key: str) -> dict[str, str]:
        return {"x-goog-api-key": key}

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        kept, dropped = split_references(request, self.max_references)
        parts: list[dict[str, Any]] = [{"text": request.prompt}]
        for path in kept:
            _, raw, mime = data_url_of(path)
            parts.append({"inlineData": {"mimeType": mime, "data": base64.b64encode(raw).decode("ascii")}})
        generation: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
        image_config: dict[str, str] = {}
        if request.width and request.height:
            image_config["aspectRatio"] = nearest_ratio(request.width, request.height)
        if self.size:
            image_config["imageSize"] = self.size
        if image_config:
            generation["imageConfig"] = image_config
        started = time.monotonic()
        answer = await self.api.post(f"{self.base}/models/{self.model}:generateContent",
                                     json_body={"contents": [{"role": "user", "parts": parts}], "generationConfig": generation})
        data = _image_part(answer)
        return await asyncio.to_thread(self.result, data, kept=kept, dropped=dropped,
                                       parameters={"model": self.model, **image_config}, started=started)


def nearest_ratio(width: int, height: int) -> str:
    target = width / height
    return min(ASPECT_RATIOS, key=lambda ratio: abs(int(ratio.split(":")[0]) / int(ratio.split(":")[1]) - target))


def _image_part(answer: dict[str, Any]) -> bytes:
    """The first non-thought inline image; a clear error when the answer was blocked or holds none."""
    candidates = answer.get("candidates") or []
    if not candidates:
        reason = (answer.get("promptFeedback") or {}).get("blockReason", "no candidates")
        raise GenerationError(f"Gemini returned no image (prompt blocked: {reason})")
    for part in (candidates[0].get("content") or {}).get("parts") or []:
        inline = part.get("inlineData") or part.get("inline_data")
        if inline and not part.get("thought"):
            try:
                data = base64.b64decode(inline.get("data", ""), validate=True)
            except ValueError:
                raise GenerationError("Gemini sent invalid base64") from None
            return checked_image(data, f"Gemini (an image part declared {inline.get('mimeType', 'unknown')!r})")
    raise GenerationError(f"Gemini returned no image (finishReason: {candidates[0].get('finishReason', 'unknown')})")
