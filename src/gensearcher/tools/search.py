"""The `search` and `image_search` tools over any `SearchBackend`.

`search` runs its queries concurrently and states "no results" and errors inside each query's block.
`image_search` downloads its candidates concurrently through the cache and the hardened fetcher,
validates and re-encodes them (`images.store_image_bytes`), and returns the first `top_k` usable ones in
rank order. The agent gives them their IMG ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gensearcher.errors import ToolError
from gensearcher.images import DEFAULT_MAX_PIXELS, image_decode_cost, store_image_bytes
from gensearcher.messages import ImageRef
from gensearcher.tools.base import (
    ImageCandidate,
    ImageHit,
    ImageSearchArgs,
    SearchArgs,
    SearchBackend,
    ToolResult,
    WebHit,
)
from gensearcher.web import Web

logger = logging.getLogger(__name__)


def _shown(text: str, limit: int = 300) -> str:
    """A query as echoed back: a model that sends 100 KB must not get 100 KB back in every block."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_hits(query: str, hits: list[WebHit]) -> str:
    """One query's block, in the layout Gen-Searcher-8B was trained on."""
    query = _shown(query)
    if hits:
        lines = [f"[{hit.title}]({hit.url})" + (f" ({hit.date})" if hit.date else "") + f" {' '.join(hit.snippet.split())}"
                 for hit in hits]
        body = "\n\n".join(lines)
    else:
        body = f"No results for '{query}'."
    return f"--- search result for [{query}] ---\n{body}\n--- end of search result ---"


class SearchTool:
    def __init__(self, backend: SearchBackend):
        self.backend = backend

    async def __call__(self, args: SearchArgs) -> ToolResult:
        used: list[str] = []

        async def one(query: str) -> tuple[str, str | None, bool]:
            try:
                return format_hits(query, await self.backend.search(query, args.top_k, used)), None, False
            except ToolError as exc:
                message = f"Search failed for '{_shown(query)}': {exc}"
                block = f"--- search result for [{_shown(query)}] ---\n{message}\n--- end of search result ---"
                return block, message, exc.outage

        blocks = await asyncio.gather(*(one(query) for query in args.queries))
        errors = [error for _, error, _ in blocks if error]
        failed = len(errors) == len(blocks)
        # A call that found something is usable; one that found nothing is an outage when a service failing
        # was part of why (with the service up, some of them would have had results).
        return ToolResult(text="\n\n".join(text for text, _, _ in blocks), cache_keys=used,
                          error="; ".join(errors) if failed else None,
                          outage=failed and any(outage for _, _, outage in blocks))


class DecodeBudget:
    """A memory budget for image decodes: a decode waits until its cost fits. One larger than the whole
    budget runs alone."""

    def __init__(self, total_bytes: int):
        self.total = total_bytes
        self.used = 0
        self.peak = 0  # the most ever held at once (for tests and benchmarks)
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, cost: int) -> AsyncIterator[None]:
        cost = min(cost, self.total)
        async with self._changed:
            await self._changed.wait_for(lambda: self.used + cost <= self.total)
            self.used += cost
            self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            async with self._changed:
                self.used -= cost
                self._changed.notify_all()


class ImageSearchTool:
    """Args:
        backend: where candidates come from.
        web: the cached, hardened door to the network.
        image_dir: where validated images are stored (content-addressed).
        candidates: how many hits to download at once to find `top_k` usable ones.
        max_pixels: images that would decode to more pixels are refused before decoding.
        stored_pixels: images are stored re-encoded at most this large.
        decode_memory_bytes: memory the decodes of this tool may hold at once; downloads run concurrently,
            decodes wait for room (ten 4096x4096 PNGs at once would otherwise need 2 GB).
    """

    def __init__(self, backend: SearchBackend, web: Web, *, image_dir: Path, candidates: int = 10,
                 max_pixels: int = DEFAULT_MAX_PIXELS, stored_pixels: int = 4_194_304, max_bytes: int | None = None,
                 decode_memory_bytes: int = 512 * 2**20):
        self.backend = backend
        self.web = web
        self.image_dir = image_dir
        self.candidates = candidates
        self.max_pixels = max_pixels
        self.stored_pixels = stored_pixels
        self.max_bytes = max_bytes
        self.budget = DecodeBudget(decode_memory_bytes)
        self._decoders = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gensearcher-decode")

    async def __call__(self, args: ImageSearchArgs) -> ToolResult:
        used: list[str] = []
        try:
            candidates = await self.backend.images(args.query, max(self.candidates, args.top_k), used)
        except ToolError as exc:
            message = f"Image search failed for '{_shown(args.query)}': {exc}"
            return ToolResult(text=message, error=message, cache_keys=used, outage=exc.outage)
        stored = await asyncio.gather(*(self._download(candidate, used) for candidate in candidates))
        hits: list[ImageHit] = []
        seen: set[str] = set()
        for candidate, image in zip(candidates, stored, strict=True):
            if image is None or image.sha256 in seen:
                continue
            seen.add(image.sha256)
            hits.append(ImageHit(local_path=image.path, url=candidate.image_url, title=candidate.title,
                                 page_url=candidate.page_url, sha256=image.sha256))
            if len(hits) == args.top_k:
                break
        if hits:
            return ToolResult(images=hits, cache_keys=used)
        unusable = f" ({len(candidates)} results could not be used)" if candidates else ""
        return ToolResult(text=f"No images found for '{_shown(args.query)}'{unusable}. Try a shorter query of two or three words.",
                          cache_keys=used)

    async def _download(self, candidate: ImageCandidate, used: list[str]) -> ImageRef | None:
        """The stored image, or None when it cannot be fetched or is not a usable picture."""
        try:
            if candidate.local_path:
                data, declared = await asyncio.to_thread(Path(candidate.local_path).read_bytes), ""
            else:
                headers = {"accept": "image/avif,image/webp,image/*,*/*;q=0.8"}
                if candidate.page_url:
                    headers["referer"] = candidate.page_url
                options: dict[str, Any] = {"max_bytes": self.max_bytes} if self.max_bytes else {}
                result = await self.web.fetch(candidate.image_url, headers=headers, used=used, **options)
                data, declared = result.body, result.content_type
            return await self._store(data, declared)
        except (ToolError, OSError, ValueError) as exc:  # one bad candidate (even a malformed URL) is skipped
            logger.info("image %s skipped: %s", candidate.image_url[:120], exc)
            return None

    async def _store(self, data: bytes, declared: str) -> ImageRef:
        loop = asyncio.get_running_loop()
        sizes = {"max_pixels": self.max_pixels, "stored_pixels": self.stored_pixels}
        cost = await loop.run_in_executor(self._decoders, functools.partial(image_decode_cost, data, **sizes))
        async with self.budget.hold(cost):
            return await loop.run_in_executor(
                self._decoders, functools.partial(store_image_bytes, data, self.image_dir, declared_type=declared, **sizes))

    async def aclose(self) -> None:
        self._decoders.shutdown(wait=False, cancel_futures=True)
