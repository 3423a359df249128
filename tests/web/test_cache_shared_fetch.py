"""Concurrent identical calls share one fetch: the six rollouts of a GRPO prompt pay once for a search."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gensearcher.config import load_settings
from gensearcher.testing.local_web import LocalWeb
from gensearcher.tools import build_tools


async def test_six_concurrent_identical_searches_reach_the_api_once(tmp_path: Path) -> None:
    with LocalWeb() as web:
        settings = load_settings({
            "search": {"backend": "serper", "serper_api_key": "test-key", "text_search_url": web.url + "/serper/search",
                       "image_search_url": web.url + "/serper/images", "summarise": False},
            "fetch": {"allowed_networks": ["127.0.0.1/32"]}, "cache": {"dir": str(tmp_path / "cache")}})
        tools = build_tools(settings, output_dir=tmp_path)
        try:
            outcomes = await asyncio.gather(*(tools.toolbox.call("search", {"queries": ["eiffel tower"]})
                                              for _ in range(6)))
            other = await tools.toolbox.call("search", {"queries": ["louvre"]})
        finally:
            await tools.aclose()
    texts = {outcome.result.text for outcome in outcomes}
    assert len(texts) == 1 and "eiffel" in texts.pop().lower()
    assert all(outcome.result.error is None for outcome in [*outcomes, other])
    searches = {path: n for path, n in web.hits.items() if "serper/search" in path}
    assert sum(searches.values()) == 2, searches  # one for the six, one for the other query
