"""Seedream 4.x through the Volcengine Ark images API: one endpoint for text-to-image and for references
(`image`: a list of data URLs). Images come back inline (b64_json), so nothing is downloaded."""

from __future__ import annotations

import time
from typing import Any

from gensearcher.config import GeneratorConfig
from gensearcher.generate._api import ApiClient, data_url_of
from gensearcher.generate.base import GenerationRequest, GenerationResult, image_info, split_references
from gensearcher.web import Fetcher

DEFAULT_BASE = "https://ark.cn-beijing.volces.com/api/v3"
DEFAULT_MODEL = "doubao-seedream-4-5-251128"


class SeedreamGenerator:
    name = "seedream"

    def __init__(self, config: GeneratorConfig, *, max_references: int = 10, fetcher: Fetcher | None = None):
        assert config.api_key is not None
        self.base = (config.api_base_url or DEFAULT_BASE).rstrip("/")
        self.model = config.api_model or DEFAULT_MODEL
        self.max_references = max_references
        self.api = ApiClient(headers={"authorization": f"Bearer {config.api_key.get_secret_value()}"},
                             timeout_s=config.timeout_s, max_retries=config.max_retries, fetcher=fetcher)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        kept, dropped = split_references(request, self.max_references)
        size = f"{request.width}x{request.height}" if request.width and request.height else "2K"
        body: dict[str, Any] = {"model": self.model, "prompt": request.prompt, "size": size,
                                "response_format": "b64_json", "watermark": False,
                                "sequential_image_generation": "disabled", "seed": request.seed}
        if kept:
            body["image"] = [data_url_of(path)[0] for path in kept]
        started = time.monotonic()
        answer = await self.api.post(f"{self.base}/images/generations", json_body=body)
        data = await self.api.image_from((answer.get("data") or [{}])[0])
        width, height = image_info(data)
        return GenerationResult(image_png=data, width=width, height=height, backend=self.name, model=self.model,
                                used_images=kept, dropped_references=dropped,
                                parameters={"size": size, "model": self.model, "seed": request.seed},
                                seconds=time.monotonic() - started)

    async def aclose(self) -> None:
        await self.api.aclose()
