"""The record-and-replay cache: modes, keys without secrets, export and import."""

from __future__ import annotations

import tarfile
import time

import pytest

from gensearcher.config import FetchConfig
from gensearcher.errors import UserError
from gensearcher.web import CacheMiss, Fetcher, FetchError, Web, WebCache, cache_key


@pytest.fixture
async def live(tmp_path):
    fetcher = Fetcher(FetchConfig(allowed_networks=["127.0.0.1/32"]))
    yield fetcher
    await fetcher.aclose()


async def test_readwrite_serves_repeats_from_the_cache(tmp_path, live, local_web):
    web = Web(live, WebCache(tmp_path / "c"))
    used: list[str] = []
    first = await web.fetch(local_web.url + "/page/trophy.html", used=used)
    hits = local_web.hits["/page/trophy.html"]
    second = await web.fetch(local_web.url + "/page/trophy.html", used=used)
    assert second.body == first.body and second.content_type == "text/html"
    assert local_web.hits["/page/trophy.html"] == hits and len(used) == 1
    web.cache.close()


async def test_keys_never_hold_secrets(tmp_path, live, local_web):
    web = Web(live, WebCache(tmp_path / "c"))
    body = {"q": "tour", "num": 3}
    a, b = [], []
    await web.fetch(local_web.url + "/serper/search", method="POST", json_body=body, headers={"x-api-key": "test-key"},
                    namespace="serper.search", used=a)
    # The same request with another key is the same entry: secrets are not part of what was asked.
    await web.fetch(local_web.url + "/serper/search", method="POST", json_body=body, headers={"x-api-key": "other"},
                    namespace="serper.search", used=b)
    assert a == b == [cache_key("serper.search", {"method": "POST", "url": local_web.url + "/serper/search", "body": body})]
    stored = (tmp_path / "c" / "index.sqlite").read_bytes()
    assert b"test-key" not in stored
    web.cache.close()


async def test_replay_needs_no_network_and_names_a_miss(tmp_path, live, local_web):
    recorder = Web(live, WebCache(tmp_path / "c"))
    recorded = await recorder.fetch(local_web.url + "/page/tour.html")
    recorder.cache.close()
    replay = Web(None, WebCache(tmp_path / "c", mode="replay"))
    assert (await replay.fetch(local_web.url + "/page/tour.html")).body == recorded.body
    with pytest.raises(CacheMiss, match=r"/page/trophy\.html"):
        await replay.fetch(local_web.url + "/page/trophy.html")
    replay.cache.close()


async def test_record_refreshes_and_off_stores_nothing(tmp_path, live, local_web):
    url = local_web.url + "/page/tour.html"
    web = Web(live, WebCache(tmp_path / "c", mode="record"))
    await web.fetch(url)
    await web.fetch(url)
    hits = local_web.hits["/page/tour.html"]
    web.cache.close()
    off = Web(live, WebCache(tmp_path / "d", mode="off"))
    await off.fetch(url)
    assert local_web.hits["/page/tour.html"] == hits + 1
    assert off.cache.lookup(cache_key("fetch", {"method": "GET", "url": url, "body": None})) is None
    off.cache.close()


async def test_max_age(tmp_path):
    cache = WebCache(tmp_path / "c", max_age_s=60)
    key = cache_key("x", {"a": 1})
    cache.store(key, "x", {"a": 1}, b"old", {}, created=time.time() - 120)
    calls = []

    async def fetch():
        calls.append(1)
        return b"new", {}

    value = await cache.get_or_fetch("x", {"a": 1}, fetch)
    assert value.body == b"new" and not value.hit and calls == [1]
    cache.close()


async def test_export_import_round_trip(tmp_path):
    source = WebCache(tmp_path / "a")
    keys = []
    for i in range(3):
        async def fetch(i=i):
            return f"body {i}".encode(), {"i": i}
        keys.append((await source.get_or_fetch("ns", {"i": i}, fetch)).key)
    written, missing = source.export([keys[0], keys[2], "nope"], tmp_path / "frozen.tar")
    assert written == 2 and missing == ["nope"]
    target = WebCache(tmp_path / "b", mode="replay")
    assert target.import_archive(tmp_path / "frozen.tar") == 2

    async def never():
        raise AssertionError("replay must not fetch")

    assert (await target.get_or_fetch("ns", {"i": 2}, never)).body == b"body 2"
    with pytest.raises(CacheMiss):
        await target.get_or_fetch("ns", {"i": 1}, never)
    source.close()
    target.close()


def test_import_rejects_corrupt_archives(tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar")
    cache = WebCache(tmp_path / "c")
    with pytest.raises(UserError, match="not a gensearcher cache archive"):
        cache.import_archive(bad)
    import io
    import json

    with tarfile.open(tmp_path / "tampered.tar", "w") as tar:
        entry = json.dumps({"key": cache_key("n", {}), "namespace": "n", "request": "{}", "meta": "{}",
                            "blob": "0" * 64, "created": 0})
        for name, data in (("entries.jsonl", entry.encode()), ("blobs/" + "0" * 64, b"different bytes")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(UserError, match="corrupt"):
        cache.import_archive(tmp_path / "tampered.tar")
    cache.close()


async def test_a_page_cached_under_a_looser_rule_is_not_served_under_the_strict_one(tmp_path, local_web):
    """A shared cache used to replay private pages to a run that may not fetch them."""
    loose = Web(Fetcher(FetchConfig(allow_private_networks=True, timeout_s=5)), WebCache(tmp_path / "shared"))
    recorded = await loose.fetch(local_web.url + "/redirect/1")  # ends on a loopback page
    await loose.aclose()
    assert b"Lina Vos" in recorded.body
    for url in (local_web.url + "/redirect/1", local_web.url.replace("127.0.0.1", "localhost") + "/page/tour.html"):
        strict = Web(Fetcher(FetchConfig(timeout_s=5)), WebCache(tmp_path / "shared"))
        try:
            with pytest.raises(FetchError) as info:
                await strict.fetch(url)
            assert info.value.reason == "blocked_address"
            assert strict.fetcher is not None and strict.fetcher.requests_sent == 0
        finally:
            await strict.aclose()


async def test_a_blob_torn_by_a_power_cut_is_fetched_again_and_repaired(tmp_path, live, local_web):
    """Blobs are not fsynced while their index row is (SQLite commits durably): after a power cut the row
    can name a blob the disk kept empty or short. That must read as a miss, never as an empty page."""
    web = Web(live, WebCache(tmp_path / "c"))
    url = local_web.url + "/page/trophy.html"
    first = await web.fetch(url, used=[])
    [blob] = [p for p in (tmp_path / "c" / "blobs").rglob("*") if p.is_file()]
    blob.write_bytes(first.body[:0])  # what the lost data blocks leave: the renamed file, empty
    hits = local_web.hits["/page/trophy.html"]
    again = await web.fetch(url, used=[])
    assert again.body == first.body and local_web.hits["/page/trophy.html"] == hits + 1
    repaired = await web.fetch(url, used=[])  # the refetch rewrote the blob: a hit again
    assert repaired.body == first.body and local_web.hits["/page/trophy.html"] == hits + 1
    blob.write_bytes(first.body[:-7] + b"garbage")  # same size, other bytes
    assert (await web.fetch(url, used=[])).body == first.body and local_web.hits["/page/trophy.html"] == hits + 2
    web.cache.close()


async def test_a_torn_blob_is_left_out_of_an_export_instead_of_spoiling_its_import(tmp_path, live, local_web):
    web = Web(live, WebCache(tmp_path / "c"))
    await web.fetch(local_web.url + "/page/trophy.html", used=[])
    [key] = [row[0] for row in web.cache._db.execute("SELECT key FROM entries")]
    [blob] = [p for p in (tmp_path / "c" / "blobs").rglob("*") if p.is_file()]
    blob.write_bytes(b"")
    written, missing = web.cache.export([key], tmp_path / "out.tar.gz")
    assert (written, missing) == (0, [key])
    assert WebCache(tmp_path / "other").import_archive(tmp_path / "out.tar.gz") == 0
    web.cache.close()
