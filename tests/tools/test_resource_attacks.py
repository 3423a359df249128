"""Mediums 6 and 7 and the tool-side lows of issue 11 as the attack, on loopback: a link-heavy page that
used to cost a minute of CPU in an unstoppable thread, an image search of decompression-sized PNGs, a
malformed candidate URL, a 100 KB URL, a corpus symlink pointing outside, a planted cache archive, and
the web cache shared between runs."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image

from gensearcher.config import FetchConfig, load_settings
from gensearcher.errors import UserError
from gensearcher.images import BYTES_PER_DECODED_PIXEL
from gensearcher.testing.documents import link_flood_page as hostile_page
from gensearcher.tools import BrowseArgs, ImageSearchArgs, SearchArgs, Toolbox, build_tools
from gensearcher.tools.browse import BrowseTool
from gensearcher.tools.local import LocalCorpus, build_index
from gensearcher.tools.search import ImageSearchTool, SearchTool
from gensearcher.tools.serper import SerperBackend
from gensearcher.web import Fetcher, Web, WebCache, cache_key
from gensearcher.web.extract_pool import ExtractionPool


def _png(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _site(pages: dict[str, bytes], images: dict[str, tuple[str, bytes]], results: dict[str, list[str]]) -> FastAPI:
    app = FastAPI()

    @app.get("/page/{name}")
    async def page(name: str):
        return HTMLResponse(pages[name])

    @app.get("/img/{name}")
    async def image(name: str):
        kind, data = images[name]
        return Response(data, media_type=kind)

    @app.post("/serper/images")
    async def serper_images(request: Request):
        query = (await request.json())["q"]
        return JSONResponse({"images": [{"title": url.rsplit("/", 1)[-1], "imageUrl": url} for url in results[query]]})

    return app


@pytest.fixture(scope="module")
def site():
    from gensearcher.testing.threaded_server import ThreadedUvicorn

    bomb = _png((6300, 6300), (10, 20, 30))  # valid, about 130 KB on the wire, 40 MP decoded
    photo = io.BytesIO()
    Image.new("RGB", (6000, 4000), (200, 120, 40)).save(photo, format="JPEG")
    images = {f"bomb-{i}.png": ("image/png", bomb) for i in range(10)}
    images |= {f"big-{i}.png": ("image/png", _png((4096, 4096), (40 * i, 90, 160))) for i in range(3)}
    images["photo.jpg"] = ("image/jpeg", photo.getvalue())
    images["small.png"] = ("image/png", _png((64, 64), (1, 200, 1)))
    pages = {"hostile.html": hostile_page(2_000_000), "tiny.html": b"<html><body><p>Tiny page text.</p></body></html>",
             "marked.html": hostile_page(400_000, marker="END-MARKER") + b"<p>END-MARKER after the cap</p>"}
    results: dict[str, list[str]] = {}
    with ThreadedUvicorn(_site(pages, images, results)) as server:
        base = server.url + "/img/"
        results |= {"bomb": [base + f"bomb-{i}.png" for i in range(10)],
                    "big": [base + f"big-{i}.png" for i in range(3)],
                    "photo": [base + "photo.jpg"],
                    "malformed": ["http://[::1", "http://127.0.0.1:notaport/x.png", base + "small.png"]}
        yield server


@pytest.fixture
async def web(tmp_path):
    # These attacks are about CPU and memory, not addresses: the loopback site is allowed here.
    web = Web(Fetcher(FetchConfig(allowed_networks=["127.0.0.1/32"], timeout_s=10)), WebCache(tmp_path / "cache"))
    yield web
    await web.aclose()


async def test_hostile_page_extraction_is_killed_at_its_deadline(site, web):
    pool = ExtractionPool(workers=2, timeout_s=1.0, max_bytes=50_000_000)  # no cap: the deadline must stop it
    tool = BrowseTool(web, summariser=None, extractor=pool)
    try:
        await pool.start()
        pids = {worker.process.pid for worker in pool._all}
        assert len(pids) == 2
        started = time.monotonic()
        hostile = asyncio.create_task(Toolbox({"browse": tool}).call("browse", {"url": site.url + "/page/hostile.html",
                                                                                "query": "q"}))
        await asyncio.sleep(0.3)
        tiny = await tool(BrowseArgs(url=site.url + "/page/tiny.html", query="q"))
        await asyncio.wait_for(asyncio.to_thread(lambda: None), 1)  # the shared thread pool is not starved
        outcome = await hostile
        elapsed = time.monotonic() - started
        alive = {worker.process.pid for worker in pool._all}
    finally:
        pool.close()
    assert "Tiny page text" in tiny.text
    assert outcome.result.error and "could not be read within 1 s" in outcome.result.text
    assert elapsed < 5  # the page takes several CPU seconds; the deadline ended it
    assert pool.killed == 1
    (killed,) = pids - alive
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)  # the killed worker is gone, and its CPU and memory with it


async def test_only_the_capped_start_of_a_page_reaches_the_extractor(site, web):
    pool = ExtractionPool(workers=1, timeout_s=60, max_bytes=100_000)
    try:
        result = await BrowseTool(web, summariser=None, extractor=pool, max_chars=10_000_000)(
            BrowseArgs(url=site.url + "/page/marked.html", query="q"))
    finally:
        pool.close()
    assert "link 10" in result.text and "END-MARKER" not in result.text


def _images_tool(site, web, tmp_path, **options) -> ImageSearchTool:
    backend = SerperBackend(web, api_key="k" * 10, search_url=site.url + "/serper/search",
                            images_url=site.url + "/serper/images")
    return ImageSearchTool(backend, web, image_dir=tmp_path / "img", **options)


async def test_decompression_sized_pngs_are_refused_before_decoding(site, web, tmp_path):
    tool = _images_tool(site, web, tmp_path)
    result = await tool(ImageSearchArgs(query="bomb", top_k=10))
    assert not result.images and "10 results could not be used" in result.text
    assert tool.budget.peak == 0  # not one of the ten was decoded
    assert not list((tmp_path / "img").rglob("*.jpg"))


async def test_large_images_decode_one_at_a_time_under_the_budget(site, web, tmp_path):
    tool = _images_tool(site, web, tmp_path, decode_memory_bytes=100 * 2**20)
    result = await tool(ImageSearchArgs(query="big", top_k=3))
    assert len(result.images) == 3
    assert 0 < tool.budget.peak <= tool.budget.total  # each 4096x4096 costs more than the budget: one at a time
    for hit in result.images:
        with Image.open(hit.local_path) as stored:
            assert stored.width * stored.height <= 4_194_304


async def test_large_jpeg_decodes_downscaled(site, web, tmp_path):
    tool = _images_tool(site, web, tmp_path)
    result = await tool(ImageSearchArgs(query="photo", top_k=1))
    assert len(result.images) == 1  # 24 MP on the wire, over the cap, yet decoded at 3000x2000
    assert tool.budget.peak == 3000 * 2000 * BYTES_PER_DECODED_PIXEL


async def test_one_malformed_candidate_url_does_not_fail_the_search(site, web, tmp_path):
    result = await _images_tool(site, web, tmp_path)(ImageSearchArgs(query="malformed", top_k=3))
    assert [hit.url.rsplit("/", 1)[-1] for hit in result.images] == ["small.png"]


async def test_a_100_kb_url_is_not_echoed_into_the_observation(web):
    url = "http://example.org/" + "a" * 100_000
    outcome = await Toolbox({"browse": BrowseTool(web, summariser=None)}).call("browse", {"url": url, "query": "q"})
    assert outcome.result.error and len(outcome.result.text) < 500
    assert web.fetcher is not None and web.fetcher.requests_sent == 0


async def test_a_100_kb_query_is_not_echoed_back_whole(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "note.md").write_text("# Note\n\nNothing here.\n")
    toolbox = Toolbox({"search": SearchTool(LocalCorpus(tmp_path / "corpus"))})
    outcome = await toolbox.call("search", {"queries": ["zebra " * 20_000]})
    assert len(outcome.result.text) < 1000


async def test_corpus_index_does_not_follow_symlinks_out_of_the_corpus(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwords.md").write_text("# Vault\n\nThe vault password is hunter2-secret.\n")
    (outside / "private").mkdir()
    (outside / "private" / "diary.txt").write_text("hunter2-secret diary entry")
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "public.md").write_text("# Public\n\nA public note about the vault building.\n")
    (root / "linked.md").symlink_to(outside / "passwords.md")
    (root / "linked-dir").symlink_to(outside / "private", target_is_directory=True)
    _, documents, _ = build_index(root)
    assert documents == 1
    corpus = LocalCorpus(root)
    found = await SearchTool(corpus)(SearchArgs(queries=["vault password hunter2", "diary"]))
    assert "Public" in found.text and "hunter2-secret" not in found.text and "linked" not in found.text


def _archive(path: Path, entries: list[dict], blobs: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in [("entries.jsonl", "\n".join(json.dumps(e) for e in entries).encode()),
                           *((f"blobs/{blob}", data) for blob, data in blobs.items())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_cache_import_refuses_an_answer_planted_under_another_requests_key(tmp_path):
    import hashlib

    planted = b'{"organic": [{"title": "Fake news", "link": "https://evil.example/"}]}'
    blob = hashlib.sha256(planted).hexdigest()
    victim = {"method": "POST", "url": "https://google.serper.dev/search", "body": {"q": "tour winner", "num": 5}}
    entry = {"key": cache_key("serper.search", victim), "namespace": "serper.search",
             "request": json.dumps({**victim, "body": {"q": "something else", "num": 5}}),
             "meta": "{}", "blob": blob, "created": 0}
    cache = WebCache(tmp_path / "cache")
    try:
        with pytest.raises(UserError, match="does not match its request"):
            cache.import_archive(_archive(tmp_path / "planted.tar", [entry], {blob: planted}))
        assert cache.lookup(entry["key"]) is None
        assert not list(tmp_path.joinpath("cache").rglob(blob))  # nothing of it was kept
    finally:
        cache.close()


async def test_the_web_cache_belongs_to_the_run(tmp_path):
    settings = load_settings({"search": {"backend": "ddgs"}})
    tools = build_tools(settings, output_dir=tmp_path / "run-a")
    try:
        assert tools.web.cache is not None and tools.web.cache.root == tmp_path / "run-a" / "web-cache"
        assert not (Path.cwd() / "outputs" / "web-cache").exists()
    finally:
        await tools.aclose()
