"""Which failed tool calls are service outages (training leaves such rollouts out) and which are the model's.

Everything runs through the real `Toolbox` that `build_tools` makes, against the local web's Serper-,
DuckDuckGo- and page endpoints on 127.0.0.1, with small retry counts so the retries really happen, fast.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gensearcher.agent import Task
from gensearcher.agent.factory import build_agent
from gensearcher.config import load_settings
from gensearcher.testing import Reply, ScriptedPolicyServer
from gensearcher.testing.local_web import LocalWeb
from gensearcher.tools import Toolbox, build_tools
from tests.helpers import answer, call, user_texts


@pytest.fixture(scope="module")
def local_web() -> Any:
    with LocalWeb(slow_s=1.0) as web:  # /slow outlasts the 0.5 s tool deadline of the deadline tests
        yield web


def settings_for(web: LocalWeb, tmp_path: Path, **sections: dict[str, Any]) -> Any:
    base: dict[str, dict[str, Any]] = {
        "search": {"backend": "serper", "serper_api_key": "test-key", "text_search_url": web.url + "/serper/search",
                   "image_search_url": web.url + "/serper/images", "summarise": False},
        "fetch": {"allowed_networks": ["127.0.0.1/32"], "max_retries": 1, "timeout_s": 5},
        "agent": {"tool_timeout_s": 5, "max_llm_calls": 3},
        "cache": {"dir": str(tmp_path / "web-cache")},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return load_settings(base)


@asynccontextmanager
async def toolbox(web: LocalWeb, tmp_path: Path, **sections: dict[str, Any]) -> AsyncIterator[Toolbox]:
    tools = build_tools(settings_for(web, tmp_path, **sections), output_dir=tmp_path)
    try:
        yield tools.toolbox
    finally:
        await tools.aclose()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_search_api_answering_503_after_its_retries_is_an_outage(local_web, tmp_path):
    before = local_web.hits["/serper/search"], local_web.hits["/serper/images"]
    async with toolbox(local_web, tmp_path) as tools:
        search = await tools.call("search", {"queries": ["unavailable"]})
        images = await tools.call("image_search", {"query": "unavailable"})
    assert search.result.outage and search.result.error and "HTTP 503" in search.result.text
    assert images.result.outage and images.result.error and "HTTP 503" in images.result.text
    # max_retries=1: each call was sent twice before it counted as down.
    assert (local_web.hits["/serper/search"] - before[0], local_web.hits["/serper/images"] - before[1]) == (2, 2)


async def test_search_api_unreachable_or_timing_out_is_an_outage(local_web, tmp_path):
    port = closed_port()
    down = {"text_search_url": f"http://127.0.0.1:{port}/serper/search",
            "image_search_url": f"http://127.0.0.1:{port}/serper/images"}
    async with toolbox(local_web, tmp_path, search=down) as tools:
        refused = await tools.call("search", {"queries": ["tour winner"]})
    assert refused.result.outage and "cannot connect" in refused.result.text
    # The fetcher's own deadline (shorter than the tool's) ends the call: still the API's time.
    async with toolbox(local_web, tmp_path, fetch={"timeout_s": 0.5}) as tools:
        slow = await tools.call("search", {"queries": ["hang"]})
    assert slow.result.outage and "did not answer within 0.5 s" in slow.result.text


async def test_search_api_hanging_past_the_tool_deadline_is_an_outage(local_web, tmp_path):
    async with toolbox(local_web, tmp_path, agent={"tool_timeout_s": 0.5}) as tools:
        search = await tools.call("search", {"queries": ["hang"]})
        images = await tools.call("image_search", {"query": "hang"})
        # browse waits on the page the model chose: a slow page is not an outage.
        page = await tools.call("browse", {"url": local_web.url + "/slow", "query": "q"})
    for outcome in (search, images):
        assert outcome.result.outage and "did not finish within 0.5 s" in outcome.result.text
        assert outcome.duration_s < 3
    assert page.result.error and "did not finish within 0.5 s" in page.result.text and not page.result.outage


async def test_a_search_with_some_results_is_not_an_outage_one_with_none_is(local_web, tmp_path):
    async with toolbox(local_web, tmp_path) as tools:
        partial = await tools.call("search", {"queries": ["tour winner", "unavailable"]})
        none = await tools.call("search", {"queries": ["credits", "unavailable"]})
    assert "Lina Vos" in partial.result.text and "Search failed for 'unavailable'" in partial.result.text
    assert partial.result.error is None and not partial.result.outage
    assert none.result.error and none.result.outage  # nothing found, and the API being down was part of why


async def test_refusals_of_the_search_api_about_the_request_or_key_are_not_outages(local_web, tmp_path):
    async with toolbox(local_web, tmp_path) as tools:
        credits = await tools.call("search", {"queries": ["credits"]})  # 400: out of credits
        message = await tools.call("search", {"queries": ["message"]})  # 200 with only an error message
    async with toolbox(local_web, tmp_path, search={"serper_api_key": "wrong-key"}) as tools:
        refused = await tools.call("search", {"queries": ["tour winner"]})  # 403: the user must fix the key
    for outcome in (credits, message, refused):
        assert outcome.result.error and not outcome.result.outage
    assert "HTTP 403" in refused.result.text and "wrong-key" not in refused.result.text


async def test_pages_the_model_chose_and_its_own_mistakes_are_not_outages(local_web, tmp_path):
    before = local_web.hits["/broken"]
    async with toolbox(local_web, tmp_path) as tools:
        broken = await tools.call("browse", {"url": local_web.url + "/broken", "query": "q"})
        private = await tools.call("browse", {"url": "http://10.0.0.1/admin", "query": "q"})
        redirected = await tools.call("browse", {"url": local_web.url + "/to-private", "query": "q"})
        bad_args = await tools.call("search", {"queries": [], "top_k": "many"})
        unknown = await tools.call("fetch_page", {"url": local_web.url})
    assert "HTTP 500" in broken.result.text and local_web.hits["/broken"] - before == 2  # retried, then given up
    assert "10.0.0.1" in private.result.text and "10.0.0.1" in redirected.result.text
    assert "invalid arguments for search" in bad_args.result.text and "no tool named" in unknown.result.text
    for outcome in (broken, private, redirected, bad_args, unknown):
        assert outcome.result.error and not outcome.result.outage


async def test_a_replay_cache_miss_is_an_outage(local_web, tmp_path):
    before = sum(local_web.hits.values())
    async with toolbox(local_web, tmp_path, cache={"mode": "replay"}) as tools:
        search = await tools.call("search", {"queries": ["tour winner"]})
        page = await tools.call("browse", {"url": local_web.url + "/page/tour.html", "query": "q"})
    for outcome in (search, page):
        assert outcome.result.outage and outcome.result.error and "replay mode" in outcome.result.text
    assert sum(local_web.hits.values()) == before  # replay sends nothing


async def test_the_browse_summariser_down_is_an_outage_though_the_model_reads_the_page(local_web, tmp_path):
    with ScriptedPolicyServer(lambda body: Reply(status=503, error="overloaded")) as server:
        search = {"summarise": True, "summary_base_url": server.base_url, "summary_model": "summariser"}
        async with toolbox(local_web, tmp_path, search=search, policy={"max_retries": 1}) as tools:
            page = await tools.call("browse", {"url": local_web.url + "/page/tour.html", "query": "winner"})
        served = len(server.requests)
    assert served == 2  # the summariser was retried once, then given up
    assert page.result.error is None and "not summarised (the summariser failed" in page.result.text
    assert "Lina Vos" in page.result.text and page.result.outage


async def test_ddgs_failing_is_an_outage(local_web, tmp_path, monkeypatch):
    pytest.importorskip("ddgs")
    from ddgs.engines.duckduckgo import Duckduckgo

    monkeypatch.setattr(Duckduckgo, "search_url", f"http://127.0.0.1:{closed_port()}/ddg/html/")
    async with toolbox(local_web, tmp_path, search={"backend": "ddgs", "ddgs_backend": "duckduckgo"}) as tools:
        search = await tools.call("search", {"queries": ["lina vos"]})
    assert search.result.error and "ddgs text search failed" in search.result.text and search.result.outage


async def test_the_trajectory_records_a_search_outage_and_the_run_goes_on(local_web, tmp_path):
    prompt = "A poster of the 2026 Tour de France winner"
    script = [call("search", queries=["unavailable"]), call("search", queries=["tour winner"]),
              answer("Lina Vos in the yellow jersey on the podium in Paris.")]
    with ScriptedPolicyServer({prompt: script}) as server:
        settings = settings_for(local_web, tmp_path, policy={"base_url": server.base_url, "model": "scripted"})
        async with build_agent(settings, tmp_path) as agent:
            trajectory = await agent.run(Task(id="t1", prompt=prompt))
        requests = server.requests
    assert trajectory.termination == "answer"
    first, second = (step.tool_call for step in trajectory.steps[:2])
    assert first is not None and second is not None
    assert first.outage and first.error and not second.outage and second.error is None
    # The model saw the outage as an observation, then searched again and got results.
    assert "Search failed for 'unavailable'" in user_texts(requests[1])[-1] and "HTTP 503" in user_texts(requests[1])[-1]
    assert "Lina Vos" in user_texts(requests[2])[-1]
    assert trajectory.model_dump()["steps"][0]["tool_call"]["outage"] is True
