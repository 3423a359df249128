"""The address rule under attack, on loopback: Unicode IP literals, IPv6 embeddings of private IPv4, the
connector's own check, and the endpoint client that reaches the configured endpoints and nothing else."""

from __future__ import annotations

from collections import Counter

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse

from gensearcher.config import FetchConfig
from gensearcher.testing.threaded_server import ThreadedUvicorn
from gensearcher.web import Fetcher, FetchError
from gensearcher.web.fetcher import AddressPolicy

SECRET = "ADMIN-SECRET-0c1d2e3f"


def _app(hits: Counter[str]):
    app = FastAPI()

    @app.middleware("http")
    async def count(request: Request, call_next):
        hits[request.url.path] += 1
        return await call_next(request)

    @app.get("/admin")
    async def admin():
        return PlainTextResponse(SECRET)

    @app.post("/api/search")
    async def search(request: Request):
        return JSONResponse({"organic": [], "key_seen": request.headers.get("x-api-key")})

    @app.post("/api/escape")
    async def escape():
        return RedirectResponse("/admin", status_code=307)

    @app.get("/api/hop")
    async def hop(request: Request):
        return RedirectResponse(request.query_params["to"], status_code=302)

    @app.get("/echo-headers")
    async def echo(request: Request):
        return JSONResponse(dict(request.headers))

    return app


@pytest.fixture(scope="module")
def admin():
    hits: Counter[str] = Counter()
    with ThreadedUvicorn(_app(hits)) as server:
        server.hits = hits
        yield server


@pytest.fixture
async def strict():
    """What a real user has: no private network allowed."""
    fetcher = Fetcher(FetchConfig(timeout_s=5, max_retries=0))
    yield fetcher
    await fetcher.aclose()


@pytest.mark.parametrize("host", ["１２７.０.０.１", "127。0。0。1", "①②⑦.0.0.1", "127．0．0．1", "ｌｏｃａｌｈｏｓｔ",
                                  "LOCALHOST", "127.0.0.1.", "[::ffff:127.0.0.1]", "[::127.0.0.1]",
                                  "[64:ff9b::127.0.0.1]", "[2002:7f00:1::]", "[64:ff9b:1::7f00:1]"])
async def test_disguised_loopback_is_refused_and_never_contacted(strict, admin, host):
    before = admin.hits["/admin"]
    with pytest.raises(FetchError) as info:
        await strict.fetch(f"http://{host}:{admin.port}/admin")
    assert info.value.reason == "blocked_address"
    assert SECRET not in str(info.value)
    assert admin.hits["/admin"] == before


@pytest.mark.parametrize("url", ["http://１６９.２５４.１６９.２５４/latest/meta-data/",
                                 "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/", "http://[2002:a9fe:a9fe::]/",
                                 "http://[::169.254.169.254]/", "http://ｍｅｔａｄａｔａ.google.internal/"])
async def test_metadata_service_in_disguise_is_refused_before_connecting(strict, url):
    with pytest.raises(FetchError) as info:
        await strict.fetch(url)
    assert info.value.reason == "blocked_address"
    assert strict.requests_sent == 0


def test_ipv6_embeddings_of_private_ipv4_are_refused():
    policy = AddressPolicy(allow_private=False)
    for address in ("64:ff9b::10.0.0.1", "64:ff9b::127.0.0.1", "2002:c0a8:0101::1", "::10.0.0.1", "::ffff:10.0.0.1",
                    "64:ff9b:1::a00:1"):
        assert not policy.allows(address), address
    assert policy.allows("64:ff9b::8.8.8.8") and policy.allows("2002:0808:0808::1")  # public IPv4 behind them


async def test_the_connector_refuses_literals_the_url_check_never_saw(strict, admin):
    """Defence in depth: a request that skips the URL check still meets the rule when aiohttp connects."""
    before = admin.hits["/admin"]
    session = strict._client()
    with pytest.raises(Exception) as info:  # aiohttp may wrap it; the message says why
        async with session.get(f"http://127.0.0.1:{admin.port}/admin") as response:
            await response.read()
    assert "refused" in str(info.value)
    assert admin.hits["/admin"] == before


async def test_endpoint_client_reaches_exactly_its_endpoint(admin):
    endpoint = f"http://127.0.0.1:{admin.port}/api/search"
    client = Fetcher(FetchConfig(timeout_s=5, max_retries=0), endpoints=[endpoint])
    before = admin.hits["/admin"]
    try:
        result = await client.fetch(endpoint, method="POST", json={"q": "x"}, headers={"x-api-key": "k" * 12})
        assert result.status == 200  # loopback, yet reachable: the user configured it
        for url in (f"http://127.0.0.1:{admin.port}/admin",  # same host and port, other path
                    f"http://localhost:{admin.port}/api/search",  # same address, other host name
                    f"http://127.0.0.1:{admin.port}/api/search-and-more",  # a prefix of the string, not the path
                    f"http://127.0.0.1:{admin.port}/api/search/../../admin",
                    f"https://127.0.0.1:{admin.port}/api/search"):
            with pytest.raises(FetchError) as info:
                await client.fetch(url)
            assert info.value.reason == "blocked_address", url
        # A redirect from the endpoint to elsewhere on its own host is not followed.
        escape = Fetcher(FetchConfig(timeout_s=5, max_retries=0), endpoints=[f"http://127.0.0.1:{admin.port}/api"])
        try:
            with pytest.raises(FetchError) as info:
                await escape.fetch(f"http://127.0.0.1:{admin.port}/api/escape", method="POST", json={})
            assert info.value.reason == "redirects" and "outside the configured endpoints" in str(info.value)
        finally:
            await escape.aclose()
    finally:
        await client.aclose()
    assert admin.hits["/admin"] == before


async def test_credentials_never_follow_a_redirect_to_another_origin(admin):
    key = "sk-live-9f8e7d6c5b4a"
    # Two origins on loopback (the rule is lifted for this test only: it is about headers, not addresses).
    fetcher = Fetcher(FetchConfig(allowed_networks=["127.0.0.1/32"], timeout_s=5, max_retries=0))
    try:
        same = await fetcher.fetch(f"http://127.0.0.1:{admin.port}/api/hop?to=/echo-headers",
                                   headers={"x-api-key": key, "authorization": f"Bearer {key}"})
        assert key in same.body.decode()  # the same origin keeps them
        other = await fetcher.fetch(f"http://127.0.0.1:{admin.port}/api/hop?to=http://localhost:{admin.port}/echo-headers",
                                    headers={"x-api-key": key, "authorization": f"Bearer {key}", "accept": "x/y"})
        echoed = other.body.decode()
        assert key not in echoed and "x/y" in echoed  # the key was dropped, the other headers kept
    finally:
        await fetcher.aclose()


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999/", "http:///nohost", "http://[fe80::1%25eth0"])
async def test_malformed_urls_are_a_fetch_error(strict, url):
    with pytest.raises(FetchError) as info:
        await strict.fetch(url)
    assert info.value.reason in ("scheme", "blocked_address")
