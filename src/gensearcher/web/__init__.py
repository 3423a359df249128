"""The network, hardened and recorded: `Web` is the tools' single door to it.

    fetcher.py   the hardened fetcher (address rule, redirects, byte cap, deadline, retries)
    cache.py     the record-and-replay cache (SQLite + blobs), export / import
    extract.py   main text of HTML and PDF documents
    extract_pool.py  extraction in killable worker processes, bounded in size and time
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from gensearcher.errors import ToolError
from gensearcher.web.cache import CacheMiss, WebCache, cache_key
from gensearcher.web.fetcher import AddressPolicy, Fetcher, FetchError, FetchResult

__all__ = ["AddressPolicy", "CacheMiss", "FetchError", "FetchResult", "Fetcher", "Web", "WebCache", "cache_key",
           "json_check"]

Check = Callable[[FetchResult], None]


class Web:
    """Fetches through the cache. Secrets (API keys in headers) never enter a cache key.

    Args:
        fetcher: the tools' hardened fetcher, for every URL that came from the model, a search result or a
            redirect; None means no network at all (replay).
        cache: the record-and-replay cache; None means no caching.
        endpoints: the system's own client for the configured API endpoints (`Fetcher(endpoints=...)`),
            used by `fetch(..., endpoint=True)`; None sends those calls through `fetcher` as well.
    """

    def __init__(self, fetcher: Fetcher | None, cache: WebCache | None, *, endpoints: Fetcher | None = None):
        self.fetcher = fetcher
        self.cache = cache
        self.endpoints = endpoints

    async def fetch(self, url: str, *, namespace: str = "fetch", method: str = "GET", json_body: Any = None,
                    params_for_key: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                    used: list[str] | None = None, endpoint: bool = False, check: Check | None = None,
                    **options: Any) -> FetchResult:
        """A FetchResult from the cache or the network. `params_for_key` replaces the body in the key.

        `endpoint=True` marks a call the system makes to a configured API endpoint; when the endpoint is
        unavailable after the retries (5xx, 429, timeout, no connection) the FetchError has `outage` set.
        `check` raises a ToolError for an answer that is an error although its status is 2xx: such an
        answer is never stored, and a stored one is never replayed.
        """
        request = {"method": method, "url": url, "body": params_for_key if params_for_key is not None else json_body}
        client = self.endpoints if endpoint and self.endpoints is not None else self.fetcher
        if client is not None and not endpoint:
            # A cached page is checked like a live one: an entry recorded under a looser rule is not served.
            client.check_url(url)

        async def live() -> tuple[bytes, dict[str, Any]]:
            if client is None:
                raise CacheMiss(f"no network in replay mode: {method} {url[:300]}")
            try:
                result = await client.fetch(url, method=method, json=json_body, headers=headers, **options)
            except FetchError as exc:
                if endpoint and _unavailable(exc):
                    exc.outage = True
                raise
            if check is not None:
                check(result)
            return result.body, {"url": result.url, "status": result.status, "content_type": result.content_type,
                                 "redirects": result.redirects}

        def valid(body: bytes, meta: dict[str, Any]) -> bool:
            try:
                if client is not None and not endpoint:
                    # Where the recorded fetch ended up (after redirects) must pass today's rule as well.
                    for hop in (*meta.get("redirects", []), meta.get("url", url)):
                        client.check_url(hop)
                if check is not None:
                    check(_result(body, meta))
            except ToolError:
                return False
            return True

        if self.cache is None:
            body, meta = await live()
        else:
            value = await self.cache.get_or_fetch(namespace, request, live, used=used, valid=valid)
            body, meta = value.body, value.meta
        return _result(body, meta)

    async def fetch_json(self, url: str, **kwargs: Any) -> Any:
        result = await self.fetch(url, **kwargs)
        return _json(result)

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
        if self.endpoints is not None:
            await self.endpoints.aclose()
        if self.cache is not None:
            self.cache.close()


def _unavailable(exc: FetchError) -> bool:
    """A configured endpoint down, overloaded or unreachable after the fetcher's retries: the system's failure,
    not the request's. Its other answers (400 out of credits, 403 a refused key) say something about the
    request or the configuration, and stay plain errors."""
    if exc.reason in ("timeout", "connection"):
        return True
    return exc.reason == "http_status" and exc.status is not None and (exc.status == 429 or exc.status >= 500)


def _result(body: bytes, meta: dict[str, Any]) -> FetchResult:
    return FetchResult(url=meta["url"], status=meta["status"], content_type=meta["content_type"], body=body,
                       redirects=meta.get("redirects", []))


def _json(result: FetchResult) -> Any:
    try:
        return json.loads(result.body)
    except ValueError:
        raise FetchError("http_status", f"{result.url[:120]} did not answer with JSON") from None


def json_check(inner: Callable[[Any], None]) -> Check:
    """A `check` over the decoded JSON answer (non-JSON is an error too)."""

    def check(result: FetchResult) -> None:
        inner(_json(result))

    return check
