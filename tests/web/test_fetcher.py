"""The hardened fetcher against a real local web: every refusal, caps, deadlines, retries."""

from __future__ import annotations

import asyncio
import time

import pytest

from gensearcher.config import FetchConfig
from gensearcher.web import Fetcher, FetchError
from gensearcher.web.fetcher import AddressPolicy, BlockedAddress, _GuardedResolver


async def test_fetches_a_page_through_redirects(fetcher, local_web):
    result = await fetcher.fetch(local_web.url + "/redirect/3")
    assert result.status == 200 and result.url.endswith("/page/tour.html")
    assert result.content_type == "text/html" and b"Lina Vos" in result.body
    assert len(result.redirects) == 3


async def test_too_many_redirects(fetcher, local_web):
    with pytest.raises(FetchError) as info:
        await fetcher.fetch(local_web.url + "/redirect/6")
    assert info.value.reason == "redirects" and "more than 5" in str(info.value)


@pytest.mark.parametrize("path, where", [("/to-private", "10.0.0.1"), ("/to-metadata", "169.254.169.254")])
async def test_redirect_to_a_private_address_is_refused(fetcher, local_web, path, where):
    before = fetcher.requests_sent
    with pytest.raises(FetchError) as info:
        await fetcher.fetch(local_web.url + path)
    assert info.value.reason == "blocked_address" and where in str(info.value)
    assert fetcher.requests_sent == before + 1  # the redirect target was never contacted


async def test_redirect_to_another_scheme_is_refused(fetcher, local_web):
    with pytest.raises(FetchError) as info:
        await fetcher.fetch(local_web.url + "/to-file")
    assert info.value.reason == "scheme"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/x", "gopher://x", "javascript:alert(1)", "http://"])
async def test_only_http_and_https(fetcher, url):
    with pytest.raises(FetchError) as info:
        await fetcher.fetch(url)
    assert info.value.reason == "scheme"


@pytest.mark.parametrize("host", ["127.0.0.2", "10.1.2.3", "192.168.1.1", "169.254.169.254", "[::1]", "[fd00::1]",
                                  "0.0.0.0", "224.0.0.1", "100.64.0.1", "[::ffff:10.0.0.1]", "metadata.google.internal"])
async def test_private_and_special_addresses_are_refused_before_connecting(fetcher, host):
    with pytest.raises(FetchError) as info:
        await fetcher.fetch(f"http://{host}:8080/")
    assert info.value.reason == "blocked_address"
    assert fetcher.requests_sent == 0


async def test_names_are_checked_after_resolution(local_web):
    port = local_web.url.rsplit(":", 1)[1]
    strict = Fetcher(FetchConfig(timeout_s=5))  # default policy: loopback refused
    try:
        with pytest.raises(FetchError) as info:
            await strict.fetch(f"http://localhost:{port}/page/tour.html")
        assert info.value.reason == "blocked_address" and "localhost" in str(info.value)
        await strict.check_destination("http://93.184.215.14/")  # a public literal passes
        with pytest.raises(FetchError):
            await strict.check_destination(f"http://localhost:{port}/")
    finally:
        await strict.aclose()
    # The resolver itself drops refused answers (what stops DNS rebinding for any other name).
    resolver = _GuardedResolver(AddressPolicy(allow_private=False), frozenset())
    try:
        with pytest.raises(BlockedAddress, match=r"127\.0\.0\.1"):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()


async def test_allow_private_networks_lifts_the_rule(local_web):
    open_fetcher = Fetcher(FetchConfig(allow_private_networks=True, timeout_s=5))
    try:
        assert (await open_fetcher.fetch(local_web.url + "/page/tour.html")).status == 200
    finally:
        await open_fetcher.aclose()


def test_address_policy():
    policy = AddressPolicy(allow_private=False, allowed_networks=["10.5.0.0/16"])
    assert policy.allows("8.8.8.8") and policy.allows("2001:4860:4860::8888")
    assert policy.allows("10.5.3.4") and not policy.allows("10.6.0.1")
    assert not policy.allows("::ffff:169.254.169.254")


@pytest.mark.parametrize("path", ["/big", "/big-chunked", "/bomb"])
async def test_byte_cap_while_streaming(fetcher, local_web, path):
    with pytest.raises(FetchError) as info:
        await fetcher.fetch(local_web.url + path, max_bytes=1_000_000)
    assert info.value.reason == "too_large"


async def test_total_deadline(fetcher, local_web):
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        await fetcher.fetch(local_web.url + "/hang", timeout_s=0.5)
    assert info.value.reason == "timeout" and time.monotonic() - started < 2


async def test_retries_5xx_and_429_then_succeeds(fetcher, local_web):
    flaky = await fetcher.fetch(local_web.url + "/flaky", headers={"x-test-id": "a"})
    assert flaky.body == b"recovered" and local_web.hits["flaky:a"] == 3
    limited = await fetcher.fetch(local_web.url + "/ratelimited", headers={"x-test-id": "a"})
    assert limited.body == b"ok"


async def test_no_retry_on_404_and_errors_name_the_status(fetcher, local_web):
    before = local_web.hits["/missing"]
    with pytest.raises(FetchError) as info:
        await fetcher.fetch(local_web.url + "/missing")
    assert info.value.status == 404 and "HTTP 404" in str(info.value)
    assert local_web.hits["/missing"] == before + 1


async def test_gives_up_after_max_retries(local_web):
    impatient = Fetcher(FetchConfig(allowed_networks=["127.0.0.1/32"], max_retries=1))
    try:
        with pytest.raises(FetchError) as info:
            await impatient.fetch(local_web.url + "/flaky", headers={"x-test-id": "b"})
        assert info.value.status == 503 and local_web.hits["flaky:b"] == 2
    finally:
        await impatient.aclose()


async def test_per_host_concurrency_limit(local_web):
    limited = Fetcher(FetchConfig(allowed_networks=["127.0.0.1/32"], per_host_concurrency=2, timeout_s=10))
    local_web.max_in_flight["/slow"] = 0
    try:
        await asyncio.gather(*(limited.fetch(local_web.url + "/slow") for _ in range(6)))
    finally:
        await limited.aclose()
    assert local_web.max_in_flight["/slow"] == 2
