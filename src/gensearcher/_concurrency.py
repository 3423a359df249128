"""Structured fan-out: when one task fails (or the caller is cancelled), the others are cancelled too."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any


async def gather_or_cancel(awaitables: Iterable[Awaitable[Any]]) -> list[Any]:
    """Like asyncio.gather, but a failure cancels every sibling before the original error is re-raised,
    so nothing keeps running (and writing) behind the caller's back."""
    tasks = [asyncio.ensure_future(item) for item in awaitables]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
