"""The OpenAI Images API: `/images/generations` (JSON) and `/images/edits` (multipart, one `image[]` part
per reference), as the official SDK sends them.

Defaults are the reference system's: model `gpt-image-1`, size 1024x1024, `moderation: low` on generations
(the only endpoint that takes it). The OpenAI SDK's docstrings say gpt-image-1 was shut down on 2026-10-23;
set `generator.api_model` (e.g. gpt-image-1.5) to use a current model. The image comes back as PNG
(`output_format` png is asked for explicitly).
"""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import aiohttp

from gensearcher.generate._api import ApiGenerator, data_url_of
from gensearcher.generate.base import GenerationRequest, GenerationResult, split_references

DEFAULT_BASE = "https://api.openai.com/v1"


class OpenAIImagesGenerator(ApiGenerator):
    name = "openai"
    DEFAULT_BASE = DEFAULT_BASE

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        kept, dropped = split_references(request, self.max_references)
        size = f"{request.width}x{request.height}" if request.width and request.height else (self.size or "auto")
        fields: dict[str, Any] = {"model": self.model, "prompt": request.prompt, "n": 1, "size": size,
                                  "output_format": "png"}
        started = time.monotonic()
        if kept:
            files = [data_url_of(path) for path in kept]

            def form() -> aiohttp.FormData:
                data = aiohttp.FormData()
                for index, (_, raw, mime) in enumerate(files):
                    # A stream, not bytes: aiohttp sends a large bytes part in one blocking write on the loop.
                    data.add_field("image[]", io.BytesIO(raw), filename=f"reference{index}.{mime.split('/')[1]}", content_type=mime)
                for key, value in fields.items():
                    data.add_field(key, str(value))
                return data

            answer = await self.api.post(f"{self.base}/images/edits", form=form)
        else:
            if self.model.startswith("gpt-image"):
                fields["moderation"] = "low"
            answer = await self.api.post(f"{self.base}/images/generations", json_body=fields)
        data = await self.api.image_from((answer.get("data") or [{}])[0])
        parameters = {key: value for key, value in fields.items() if key != "prompt"}
        # Decoding and re-encoding a 1024 px picture is CPU work: off the loop other requests share.
        return await asyncio.to_thread(self.result, data, kept=kept, dropped=dropped, parameters=parameters,
                                       started=started)
