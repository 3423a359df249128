"""The ddgs backend. ddgs does its own HTTP: its DuckDuckGo engine URLs are pointed at the local web
(the library's HTTP is the process boundary), so its real parsing runs against DDG-shaped pages."""

from __future__ import annotations

import pytest

from gensearcher.config import FetchConfig
from gensearcher.testing.local_web import LocalWeb
from gensearcher.tools import ImageSearchArgs, SearchArgs
from gensearcher.tools.ddgs_search import DdgsBackend
from gensearcher.tools.search import ImageSearchTool, SearchTool
from gensearcher.web import Fetcher, Web, WebCache

pytest.importorskip("ddgs")


@pytest.fixture
def local_ddg(monkeypatch):
    from ddgs.engines.duckduckgo import Duckduckgo
    from ddgs.engines.duckduckgo_images import DuckduckgoImages

    with LocalWeb() as web:
        monkeypatch.setattr(Duckduckgo, "search_url", web.url + "/ddg/html/")
        monkeypatch.setattr(DuckduckgoImages, "search_url", web.url + "/ddg/i.js")
        monkeypatch.setattr(DuckduckgoImages, "_get_vqd", lambda self, query: "4-test")
        yield web


@pytest.fixture
async def web(tmp_path):
    web = Web(Fetcher(FetchConfig(allowed_networks=["127.0.0.1/32"])), WebCache(tmp_path / "cache"))
    yield web
    await web.aclose()


async def test_ddgs_text_results_are_parsed_and_cached(local_ddg, web):
    backend = DdgsBackend(web, engine="duckduckgo")
    result = await SearchTool(backend)(SearchArgs(queries=["lina vos", "empty"], top_k=2))
    assert "[Tour de France 2026 winner](" + local_ddg.url + "/page/tour.html)" in result.text
    assert "& more" in result.text  # ddgs unescapes HTML entities
    assert "No results for 'empty'." in result.text
    hits = local_ddg.hits["/ddg/html/"]
    again = await SearchTool(backend)(SearchArgs(queries=["lina vos"], top_k=2))
    assert local_ddg.hits["/ddg/html/"] == hits and "Lina Vos" in again.text  # served from the cache


async def test_ddgs_images_are_downloaded_by_our_fetcher(local_ddg, web, tmp_path):
    tool = ImageSearchTool(DdgsBackend(web, engine="duckduckgo"), web, image_dir=tmp_path / "img")
    result = await tool(ImageSearchArgs(query="tour", top_k=2))
    assert [hit.url.rsplit("/", 1)[1] for hit in result.images] == ["red.jpg", "blue.png"]
    assert local_ddg.hits["/img/red.jpg"] == 1
