"""The network, hardened and recorded: `Web` is the tools' single door to it.

    fetcher.py   the hardened fetcher (address rule, redirects, byte cap, deadline, retries)
    cache.py     the record-and-replay cache (SQLite + blobs), export / import
    extract.py   main text of HTML and PDF documents
"""

from __future__ import annotations

import json
from typing import Any

from gensearcher.web.cache import CacheMiss, WebCache, cache_key
from gensearcher.web.fetcher import AddressPolicy, Fetcher, FetchError, FetchResult

__all__ = ["AddressPolicy", "CacheMiss", "FetchError", "FetchResult", "Fetcher", "Web", "WebCache", "cache_key"]


class Web:
    """Fetches through the cache. Secrets (API keys in headers) never enter a cache key.

    Args:
        fetcher: the hardened fetcher; None means no network at all (replay).
        cache: the record-and-replay cache; None means no caching.
    """

    def __init__(self, fetcher: Fetcher | None, cache: WebCache | None):
        self.fetcher = fetcher
        self.cache = cache

    async def fetch(self, url: str, *, namespace: str = "fetch", method: str = "GET", json_body: Any = None,
                    params_for_key: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                    used: list[str] | None = None, **options: Any) -> FetchResult:
        """A FetchResult from the cache or the network. `params_for_key` replaces the body in the key."""
        request = {"method": method, "url": url, "body": params_for_key if params_for_key is not None else json_body}

        async def live() -> tuple[bytes, dict[str, Any]]:
            if self.fetcher is None:
                raise CacheMiss(f"no network in replay mode: {method} {url}")
            result = await self.fetcher.fetch(url, method=method, json=json_body, headers=headers, **options)
            return result.body, {"url": result.url, "status": result.status, "content_type": result.content_type,
                                 "redirects": result.redirects}

        if self.cache is None:
            body, meta = await live()
        else:
            value = await self.cache.get_or_fetch(namespace, request, live, used=used)
            body, meta = value.body, value.meta
        return FetchResult(url=meta["url"], status=meta["status"], content_type=meta["content_type"], body=body,
                           redirects=meta.get("redirects", []))

    async def fetch_json(self, url: str, **kwargs: Any) -> Any:
        result = await self.fetch(url, **kwargs)
        try:
            return json.loads(result.body)
        except ValueError:
            raise FetchError("http_status", f"{url} did not answer with JSON") from None

    async def remember(self, namespace: str, request: dict[str, Any], compute: Any,
                       used: list[str] | None = None) -> bytes:
        """Cache the bytes `await compute()` returns (for work that is not a plain fetch: ddgs, summaries)."""
        if self.cache is None:
            return await compute()

        async def run() -> tuple[bytes, dict[str, Any]]:
            return await compute(), {}

        return (await self.cache.get_or_fetch(namespace, request, run, used=used)).body

    async def aclose(self) -> None:
        if self.fetcher is not None:
            await self.fetcher.aclose()
        if self.cache is not None:
            self.cache.close()
