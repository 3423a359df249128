"""Seedream 4.x through the Volcengine Ark images API: one endpoint for text-to-image and for references
(`image`: a list of data URLs). Images come back inline (b64_json), so nothing is downloaded.

Defaults are the reference system's: model `doubao-seedream-4-5-251128`, size `2K`. Ark answers with JPEG;
the result holds it re-encoded as PNG and records `source_format: jpeg`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gensearcher.generate._api import ApiGenerator, data_url_of
from gensearcher.generate.base import GenerationRequest, GenerationResult, split_references

DEFAULT_BASE = "https://ark.cn-beijing.volces.com/api/v3"


class SeedreamGenerator(ApiGenerator):
    name = "seedream"
    DEFAULT_BASE = DEFAULT_BASE

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        kept, dropped = split_references(request, self.max_references)
        size = f"{request.width}x{request.height}" if request.width and request.height else (self.size or "2K")
        body: dict[str, Any] = {"model": self.model, "prompt": request.prompt, "size": size,
                                "response_format": "b64_json", "watermark": False,
                                "sequential_image_generation": "disabled", "seed": request.seed}
        if kept:
            body["image"] = [data_url_of(path)[0] for path in kept]
        started = time.monotonic()
        answer = await self.api.post(f"{self.base}/images/generations", json_body=body)
        data = await self.api.image_from((answer.get("data") or [{}])[0])
        parameters = {key: value for key, value in body.items() if key not in ("prompt", "image")}
        return await asyncio.to_thread(self.result, data, kept=kept, dropped=dropped, parameters=parameters,
                                       started=started)
