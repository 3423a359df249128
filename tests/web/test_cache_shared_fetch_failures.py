"""Review: a shared fetch that is cancelled or fails must not poison its waiters or stay in flight."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gensearcher.web import WebCache


async def test_a_cancelled_fetcher_hands_over_to_a_waiter_and_a_cancelled_waiter_harms_nobody(tmp_path: Path):
    cache = WebCache(tmp_path / "cache")
    calls: list[str] = []
    gate = asyncio.Event()

    async def slow() -> tuple[bytes, dict]:
        calls.append("slow")
        await gate.wait()
        return b"body", {}

    fetcher = asyncio.create_task(cache.get_or_fetch("ns", {"q": 1}, slow))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(cache.get_or_fetch("ns", {"q": 1}, slow))
    quitter = asyncio.create_task(cache.get_or_fetch("ns", {"q": 1}, slow))
    await asyncio.sleep(0.01)
    quitter.cancel()
    fetcher.cancel()
    await asyncio.sleep(0.01)
    gate.set()
    value = await asyncio.wait_for(waiter, 5)
    with pytest.raises(asyncio.CancelledError):
        await fetcher
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert value.body == b"body" and calls == ["slow", "slow"]  # the waiter fetched again itself
    assert not cache._inflight
    assert (await cache.get_or_fetch("ns", {"q": 1}, slow)).hit and calls == ["slow", "slow"]
    cache.close()


async def test_a_failed_fetch_fails_its_waiters_once_and_is_fetched_again_later(tmp_path: Path):
    cache = WebCache(tmp_path / "cache")
    attempts = 0

    async def flaky() -> tuple[bytes, dict]:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.02)
        if attempts == 1:
            raise ConnectionError("down")
        return b"ok", {}

    results = await asyncio.gather(*(cache.get_or_fetch("ns", {"q": 2}, flaky) for _ in range(4)),
                                   return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results) and attempts == 1
    assert not cache._inflight
    assert (await cache.get_or_fetch("ns", {"q": 2}, flaky)).body == b"ok" and attempts == 2
    cache.close()
