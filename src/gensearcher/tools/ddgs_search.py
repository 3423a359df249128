"""ddgs, the keyless metasearch library (the default when no Serper key is set).

ddgs does its own HTTP (it is the process boundary here) and is synchronous, so each call runs in a worker
thread. Its results are cached like any other external call; the image files it points to are downloaded
through our hardened fetcher.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gensearcher.errors import ConfigError, ToolError
from gensearcher.tools.base import ImageCandidate, WebHit
from gensearcher.web import Web


class DdgsBackend:
    name = "ddgs"

    def __init__(self, web: Web, *, engine: str = "duckduckgo", timeout_s: float = 15.0):
        try:
            import ddgs  # noqa: F401
        except ImportError:
            raise ConfigError("the ddgs search backend needs the ddgs package: pip install 'gensearcher[web]'") from None
        self.web = web
        self.engine = engine
        self.timeout_s = timeout_s

    async def _call(self, kind: str, query: str, count: int, used: list[str]) -> list[dict[str, Any]]:
        async def live() -> bytes:
            try:
                results = await asyncio.to_thread(self._blocking, kind, query, count)
            except ToolError:
                raise
            except Exception as exc:  # noqa: BLE001 - ddgs raises its own exception types
                message = str(exc)
                if "No results found" in message:
                    return b"[]"
                # ddgs fails as a whole (engines down, rate-limited, timing out), never because of a query.
                raise ToolError(f"ddgs {kind} search failed: {type(exc).__name__}: {message[:200]}",
                                outage=True) from None
            return json.dumps(results).encode("utf-8")

        request = {"kind": kind, "query": query, "count": count, "engine": self.engine}
        return json.loads(await self.web.remember(f"ddgs.{kind}", request, live, used=used))

    def _blocking(self, kind: str, query: str, count: int) -> list[dict[str, Any]]:
        from ddgs import DDGS

        with DDGS(timeout=int(self.timeout_s)) as client:
            method = client.text if kind == "text" else client.images
            return list(method(query, max_results=count, backend=self.engine))

    async def search(self, query: str, top_k: int, used: list[str]) -> list[WebHit]:
        return [WebHit(title=str(item.get("title") or item["href"]), url=str(item["href"]), snippet=str(item.get("body") or ""))
                for item in await self._call("text", query, top_k, used) if item.get("href")][:top_k]

    async def images(self, query: str, count: int, used: list[str]) -> list[ImageCandidate]:
        return [ImageCandidate(image_url=str(item["image"]), page_url=item.get("url"), title=item.get("title"))
                for item in await self._call("images", query, count, used) if item.get("image")][:count]
