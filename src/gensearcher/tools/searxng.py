"""A self-hosted SearXNG instance's JSON API: `GET /search?q=...&format=json[&categories=images]`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from gensearcher.errors import ToolError
from gensearcher.tools.base import ImageCandidate, WebHit
from gensearcher.web import FetchError, Web, json_check


class SearxngBackend:
    name = "searxng"

    def __init__(self, web: Web, *, base_url: str):
        self.web = web
        self.base_url = base_url.rstrip("/")

    async def _query(self, query: str, category: str, used: list[str]) -> list[dict[str, Any]]:
        url = f"{self.base_url}/search?{urlencode({'q': query, 'format': 'json', 'categories': category})}"

        def check(payload: Any) -> None:  # before the cache stores it: an error answer is never replayed
            if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
                raise ToolError("SearXNG sent an unexpected answer")

        try:
            payload = await self.web.fetch_json(url, namespace=f"searxng.{category}", used=used, endpoint=True,
                                                check=json_check(check))
        except FetchError as exc:
            if exc.status == 403:
                raise ToolError("the SearXNG instance has the JSON format disabled (enable it in settings.yml)") from None
            raise
        return [item for item in payload["results"] if isinstance(item, dict)]

    async def search(self, query: str, top_k: int, used: list[str]) -> list[WebHit]:
        return [WebHit(title=str(item.get("title") or item["url"]), url=str(item["url"]),
                       snippet=str(item.get("content") or ""), date=item.get("publishedDate"))
                for item in await self._query(query, "general", used) if item.get("url")][:top_k]

    async def images(self, query: str, count: int, used: list[str]) -> list[ImageCandidate]:
        return [ImageCandidate(image_url=str(item["img_src"]), page_url=item.get("url"), title=item.get("title"))
                for item in await self._query(query, "images", used) if item.get("img_src")][:count]
