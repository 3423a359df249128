"""Mediums 9 and 10 of issue 11 as the attack: servers on loopback that echo the credentials they were sent
into their error answers. No configured secret may reach an observation (so the policy), the cache, a
judge error or a generation error; and an error answer sent with HTTP 200 is never cached or replayed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse

from gensearcher.config import GeneratorConfig, JudgeConfig, load_settings
from gensearcher.errors import GenerationError
from gensearcher.generate.base import GenerationRequest
from gensearcher.generate.http_backend import HttpGenerator
from gensearcher.generate.openai_images import OpenAIImagesGenerator
from gensearcher.judge.judge import Judge, JudgeError
from gensearcher.testing.threaded_server import ThreadedUvicorn
from gensearcher.tools import build_tools
from gensearcher.web import WebCache
from tests.conftest import make_image

SERPER_KEY = "serper-secret-a1b2c3d4"
SUMMARY_KEY = "sk-summary-e5f6a7b8"
JINA_KEY = "jina-secret-c9d0e1f2"
JUDGE_KEY = "sk-judge-1a2b3c4d"
IMAGE_KEY = "sk-images-5e6f7a8b"
SERVER_TOKEN = "gen-token-9c8d7e6f"
ALL_KEYS = (SERPER_KEY, SUMMARY_KEY, JINA_KEY, JUDGE_KEY, IMAGE_KEY, SERVER_TOKEN)


def _echo_app(state: dict[str, bool], hits: Counter[str]) -> FastAPI:
    app = FastAPI()

    def credentials(request: Request) -> str:
        return " ".join(f"{name}={value}" for name, value in request.headers.items()
                        if name in ("authorization", "x-api-key"))

    @app.post("/serper/search")
    async def serper(request: Request):
        hits["serper"] += 1
        body = await request.json()
        if body["q"] == "poison" and not state["healed"]:
            # Serper's way: an error sent with HTTP 200, here echoing the key it was sent.
            return JSONResponse({"message": f"Invalid API key. Your key: {request.headers['x-api-key']}",
                                 "statusCode": 400})
        return JSONResponse({"organic": [{"title": "Result", "link": "https://example.org/a", "snippet": "fine"}]})

    @app.get("/jina/{target:path}")
    async def jina(target: str):
        return PlainTextResponse("Title: a page\n\nMarkdown Content:\nThe roof is made of larch wood.")

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return JSONResponse({"error": {"message": f"Incorrect API key provided: {credentials(request)}",
                                       "code": "invalid_api_key"}}, status_code=401)

    @app.post("/v1/images/generations")
    async def images(request: Request):
        hits["images"] += 1
        return JSONResponse({"error": {"message": f"Bad request headers: {credentials(request)}"}}, status_code=400)

    @app.post("/moved/v1/images/generations")
    async def moved(request: Request):
        port = request.url.port
        return RedirectResponse(f"http://localhost:{port}/v1/images/generations", status_code=307)

    @app.post("/generate")
    async def generate(request: Request):
        return JSONResponse({"success": False, "message": f"token not accepted: {credentials(request)}"},
                            status_code=401)

    return app


@pytest.fixture(scope="module")
def echo():
    state = {"healed": False}
    hits: Counter[str] = Counter()
    with ThreadedUvicorn(_echo_app(state, hits)) as server:
        server.state, server.hits = state, hits
        yield server


def _settings(echo: ThreadedUvicorn, tmp_path: Path):
    return load_settings({
        "policy": {"base_url": echo.url + "/v1", "model": "m", "max_retries": 0},
        "search": {"backend": "serper", "serper_api_key": SERPER_KEY, "text_search_url": echo.url + "/serper/search",
                   "image_search_url": echo.url + "/serper/images", "jina_api_keys": JINA_KEY,
                   "jina_url": echo.url + "/jina", "summary_base_url": echo.url + "/v1", "summary_model": "s",
                   "summary_api_key": SUMMARY_KEY},
        "judge": {"api_key": JUDGE_KEY},
        "cache": {"dir": str(tmp_path / "cache")},
    })


def _cache_bytes(root: Path) -> bytes:
    return b"".join(path.read_bytes() for path in root.rglob("*") if path.is_file())


async def test_summariser_key_echoed_by_the_summariser_never_reaches_the_policy(echo, tmp_path):
    tools = build_tools(_settings(echo, tmp_path), output_dir=tmp_path / "run")
    try:
        # A public literal: Jina (the configured endpoint) reads it; nothing connects to it.
        outcome = await tools.toolbox.call("browse", {"url": "http://93.184.215.14/roof.html", "query": "roof"})
    finally:
        await tools.aclose()
    text = outcome.model_dump_json()
    assert "the summariser failed" in text and "larch wood" in text  # the bounded extract, with the reason
    assert "[redacted]" in text
    assert not any(key in text for key in ALL_KEYS)
    assert not any(key.encode() in _cache_bytes(tmp_path / "cache") for key in ALL_KEYS)


async def test_serper_error_in_200_is_redacted_never_cached_and_never_replayed(echo, tmp_path):
    settings = _settings(echo, tmp_path)
    tools = build_tools(settings, output_dir=tmp_path / "run")
    before = echo.hits["serper"]
    try:
        failed = await tools.toolbox.call("search", {"queries": ["poison"]})
        assert "Invalid API key" in failed.result.text and SERPER_KEY not in failed.model_dump_json()
        assert SERPER_KEY.encode() not in _cache_bytes(tmp_path / "cache")
        cache = tools.web.cache
        assert cache is not None
        assert cache._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 0  # the error was not stored
        echo.state["healed"] = True
        healed = await tools.toolbox.call("search", {"queries": ["poison"]})
        assert "[Result](https://example.org/a)" in healed.result.text  # asked again, not replayed
        assert echo.hits["serper"] == before + 2
        again = await tools.toolbox.call("search", {"queries": ["poison"]})
        assert again.result.text == healed.result.text and echo.hits["serper"] == before + 2  # a good answer is
    finally:
        echo.state["healed"] = False
        await tools.aclose()


async def test_an_error_recorded_by_an_older_version_is_not_replayed(echo, tmp_path):
    """A cache written before the fix may hold an error answer: it is dropped and asked again."""
    settings = _settings(echo, tmp_path)
    tools = build_tools(settings, output_dir=tmp_path / "run")
    try:
        request = {"method": "POST", "url": echo.url + "/serper/search", "body": {"q": "old", "num": 5}}
        cache = tools.web.cache
        assert cache is not None
        from gensearcher.web import cache_key

        cache.store(cache_key("serper.search", request), "serper.search", request, b'{"message": "Not enough credits"}',
                    {"url": request["url"], "status": 200, "content_type": "application/json", "redirects": []})
        outcome = await tools.toolbox.call("search", {"queries": ["old"]})
        assert "[Result](https://example.org/a)" in outcome.result.text and "credits" not in outcome.result.text
    finally:
        await tools.aclose()


async def test_judge_key_echoed_by_the_judge_endpoint_is_not_in_the_error(echo, tmp_path):
    image = make_image(tmp_path / "gen.png")
    judge = Judge(JudgeConfig(base_url=echo.url + "/v1", api_key=JUDGE_KEY, max_retries=0),
                  cache=WebCache(tmp_path / "judge-cache"), image_dir=tmp_path / "judge-images")
    try:
        with pytest.raises(JudgeError) as info:
            await judge.wise("verified", "a red square", "it is red", image)
    finally:
        await judge.aclose()
    assert "Incorrect API key" in str(info.value) and JUDGE_KEY not in str(info.value) + info.value.raw


async def test_image_api_and_generator_server_errors_do_not_carry_their_credentials(echo, tmp_path):
    openai = OpenAIImagesGenerator(GeneratorConfig(api_key=IMAGE_KEY, api_base_url=echo.url + "/v1", max_retries=0),
                                   max_references=3)
    http = HttpGenerator(GeneratorConfig(app_urls=[echo.url], server_token=SERVER_TOKEN, max_retries=0))
    try:
        for generator in (openai, http):
            with pytest.raises(GenerationError) as info:
                await generator.generate(GenerationRequest(prompt="a red square", width=64, height=64))
            message = str(info.value)
            assert "[redacted]" in message, message
            assert IMAGE_KEY not in message and SERVER_TOKEN not in message
    finally:
        await openai.aclose()
        await http.aclose()


async def test_image_api_key_does_not_follow_a_redirect_to_another_origin(echo):
    generator = OpenAIImagesGenerator(GeneratorConfig(api_key=IMAGE_KEY, api_base_url=echo.url + "/moved/v1",
                                                      max_retries=0), max_references=3)
    before = echo.hits["images"]
    try:
        with pytest.raises(GenerationError, match="HTTP 307"):
            await generator.generate(GenerationRequest(prompt="a red square", width=64, height=64))
    finally:
        await generator.aclose()
    assert echo.hits["images"] == before  # the other origin never saw the request, nor the key
