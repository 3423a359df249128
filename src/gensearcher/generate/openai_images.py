"""The OpenAI Images API: `/images/generations` (JSON) and `/images/edits` (multipart, one `image[]` part
per reference), as the official SDK sends them. Model configurable (gpt-image-1.5 by default)."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from gensearcher.generate._api import ApiGenerator, data_url_of
from gensearcher.generate.base import GenerationRequest, GenerationResult, image_info, split_references

DEFAULT_BASE = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-image-1.5"


class OpenAIImagesGenerator(ApiGenerator):
    name = "openai"
    DEFAULT_BASE = DEFAULT_BASE
    DEFAULT_MODEL = DEFAULT_MODEL

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        kept, dropped = split_references(request, self.max_references)
        size = f"{request.width}x{request.height}" if request.width and request.height else "auto"
        started = time.monotonic()
        if kept:
            files = [data_url_of(path) for path in kept]

            def form() -> aiohttp.FormData:
                data = aiohttp.FormData()
                for index, (_, raw, mime) in enumerate(files):
                    data.add_field("image[]", raw, filename=f"reference{index}.{mime.split('/')[1]}", content_type=mime)
                for key, value in (("prompt", request.prompt), ("model", self.model), ("n", "1"), ("size", size)):
                    data.add_field(key, value)
                return data

            answer = await self.api.post(f"{self.base}/images/edits", form=form)
        else:
            body: dict[str, Any] = {"model": self.model, "prompt": request.prompt, "n": 1, "size": size}
            answer = await self.api.post(f"{self.base}/images/generations", json_body=body)
        data = await self.api.image_from((answer.get("data") or [{}])[0])
        width, height = image_info(data)
        return GenerationResult(image_png=data, width=width, height=height, backend=self.name, model=self.model,
                                used_images=kept, dropped_references=dropped,
                                parameters={"size": size, "model": self.model}, seconds=time.monotonic() - started)
