"""High 1 of issue 11 as the attack: the policy (and summariser) on 127.0.0.1, a secret admin page on
another loopback port, and a model that goes for it. With the settings a real user has (no private
network allowed), nothing of the admin page may reach the trajectory, the policy, the summariser or the
cache, whether the model browses there directly, via `localhost`, via a redirect from a page on the
endpoint's host, through Jina, or as an image URL a search result names."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from gensearcher.agent import Task
from gensearcher.agent.factory import build_agent
from gensearcher.config import load_settings
from gensearcher.testing import ScriptedPolicyServer
from gensearcher.testing.threaded_server import ThreadedUvicorn
from tests.conftest import make_image
from tests.helpers import answer, call

SECRET = "ADMIN-SECRET-5b7c9d1e"


def _admin_app(hits: Counter[str], png: bytes) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def count(request: Request, call_next):
        hits[request.url.path] += 1
        return await call_next(request)

    @app.get("/admin")
    async def admin():
        return PlainTextResponse(f"<html><body><p>Internal console. Token: {SECRET}</p></body></html>",
                                 media_type="text/html")

    @app.get("/secret.png")
    async def secret_png():
        return Response(png, media_type="image/png")

    return app


def _search_app(admin_url: str, hits: Counter[str]) -> FastAPI:
    """A Serper-compatible endpoint whose results (and whose other pages) point at the admin server."""
    app = FastAPI()

    @app.middleware("http")
    async def count(request: Request, call_next):
        hits[request.url.path] += 1
        return await call_next(request)

    @app.post("/serper/search")
    async def search():
        return JSONResponse({"organic": [{"title": "Console", "link": admin_url + "/admin", "snippet": "internal"}]})

    @app.post("/serper/images")
    async def images():
        return JSONResponse({"images": [{"title": "secret", "imageUrl": admin_url + "/secret.png",
                                         "link": admin_url + "/admin"}]})

    @app.get("/go")
    async def go():
        return RedirectResponse(admin_url + "/admin", status_code=302)

    @app.get("/jina/{target:path}")
    async def jina(target: str):
        return PlainTextResponse(f"Title: page\n\nMarkdown Content:\nText of {target}")

    return app


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    png = make_image(tmp_path_factory.mktemp("png") / "secret.png", size=(64, 64)).read_bytes()
    admin_hits: Counter[str] = Counter()
    search_hits: Counter[str] = Counter()
    with ThreadedUvicorn(_admin_app(admin_hits, png)) as admin, \
            ThreadedUvicorn(_search_app(admin.url, search_hits)) as search:
        yield admin, admin_hits, search, search_hits


def _jina_hits(hits: Counter[str]) -> int:
    return sum(count for path, count in hits.items() if path.startswith("/jina"))


def _attacks(admin: ThreadedUvicorn, search: ThreadedUvicorn, policy_url: str) -> list[str]:
    port = admin.port
    return [call("browse", url=f"http://127.0.0.1:{port}/admin", query="token"),
            call("browse", url=f"http://localhost:{port}/admin", query="token"),
            call("browse", url=f"http://１２７.０.０.１:{port}/admin", query="token"),
            call("browse", url=f"{search.url}/go", query="token"),  # a page on the endpoint's host redirects
            call("browse", url=f"{policy_url}/models", query="token"),  # the policy endpoint itself
            call("search", queries=["internal console"]),  # works: the configured endpoint is reachable
            call("image_search", query="secret"),
            answer("A console.")]


@pytest.mark.parametrize("summarise, jina", [(True, False), (False, False), (True, True)])
async def test_model_cannot_reach_other_loopback_ports(servers, tmp_path: Path, summarise: bool, jina: bool):
    admin, admin_hits, search, search_hits = servers
    before_admin, before_jina = sum(admin_hits.values()), _jina_hits(search_hits)
    prompt = "Show the internal console"
    with ScriptedPolicyServer({}, default="SUMMARY: nothing useful") as policy:
        policy.script = {prompt: _attacks(admin, search, policy.base_url)}
        settings = load_settings({
            "policy": {"base_url": policy.base_url, "model": "m", "temperature": 0.0},
            "agent": {"date": "2026-12-01"},
            "search": {"backend": "serper", "serper_api_key": "serper-key-123456",
                       "text_search_url": search.url + "/serper/search",
                       "image_search_url": search.url + "/serper/images", "summarise": summarise,
                       **({"jina_api_keys": "jina-key-123456", "jina_url": search.url + "/jina"} if jina else {})},
        })
        out = tmp_path / "run"
        async with build_agent(settings, out) as agent:
            trajectory = await agent.run(Task(id="t", prompt=prompt))
        sent_to_policy = repr(policy.requests)

    steps = [step.tool_call for step in trajectory.steps if step.tool_call is not None]
    observations = [step.result_text for step in steps]
    assert len(observations) == 7
    assert all("refused" in text or "not fetched" in text for text in observations[:5]), observations[:5]
    assert "Console" in observations[5]  # the search endpoint itself was reachable
    assert "No images found" in observations[6]
    # Nothing of the admin server reached anyone: not contacted at all.
    assert sum(admin_hits.values()) == before_admin
    assert search_hits["/go"] == 0 and _jina_hits(search_hits) == before_jina
    assert SECRET not in trajectory.model_dump_json() and SECRET not in sent_to_policy
    cache_bytes = b"".join(path.read_bytes() for path in (out / "web-cache").rglob("*") if path.is_file())
    assert SECRET.encode() not in cache_bytes
    assert not list((out / "images").rglob("*.jpg"))  # the secret image was never stored
