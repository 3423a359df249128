"""Serper (Google results): `POST {"q", "num"}` with `X-API-KEY`, to /search and /images."""

from __future__ import annotations

from typing import Any

from gensearcher._redact import Redactor
from gensearcher.errors import ToolError
from gensearcher.tools.base import ImageCandidate, WebHit
from gensearcher.web import FetchError, Web, json_check


class SerperBackend:
    name = "serper"

    def __init__(self, web: Web, *, api_key: str, search_url: str, images_url: str):
        self.web = web
        self._headers = {"x-api-key": api_key, "content-type": "application/json"}
        self._redact = Redactor([api_key])
        self.search_url = search_url
        self.images_url = images_url

    async def _post(self, url: str, namespace: str, query: str, num: int, used: list[str],
                    results_key: str) -> dict[str, Any]:
        """The answer of one Serper call; an error answer (even one sent with HTTP 200) raises ToolError.

        The check runs before the cache stores the answer: an error is never recorded, so never replayed.
        """

        def check(payload: Any) -> None:
            if not isinstance(payload, dict):
                raise ToolError("Serper sent an unexpected answer")
            if results_key not in payload and ("message" in payload or "error" in payload):
                message = str(payload.get("message") or payload.get("error"))[:300]
                raise ToolError(f"Serper: {self._redact(message)}")

        body = {"q": query, "num": num}
        try:
            payload = await self.web.fetch_json(url, namespace=namespace, method="POST", json_body=body,
                                                headers=self._headers, used=used, endpoint=True,
                                                check=json_check(check))
        except FetchError as exc:
            if exc.status == 403:
                raise ToolError("Serper refused the API key (HTTP 403)") from None
            raise
        return payload

    async def search(self, query: str, top_k: int, used: list[str]) -> list[WebHit]:
        payload = await self._post(self.search_url, "serper.search", query, top_k, used, "organic")
        hits = []
        for item in payload.get("organic") or []:
            if isinstance(item, dict) and item.get("link"):
                hits.append(WebHit(title=str(item.get("title") or item["link"]), url=str(item["link"]),
                                   snippet=str(item.get("snippet") or ""), date=item.get("date")))
        return hits[:top_k]

    async def images(self, query: str, count: int, used: list[str]) -> list[ImageCandidate]:
        payload = await self._post(self.images_url, "serper.images", query, count, used, "images")
        candidates = []
        for item in payload.get("images") or []:
            if not isinstance(item, dict):
                continue
            url = item.get("imageUrl") or item.get("image_url") or item.get("url") or item.get("thumbnailUrl")
            if url:
                candidates.append(ImageCandidate(image_url=str(url), page_url=item.get("link") or item.get("pageUrl"),
                                                 title=item.get("title") or item.get("source")))
        return candidates[:count]
