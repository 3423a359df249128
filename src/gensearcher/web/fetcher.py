"""The hardened fetcher: every download of a page, an image or an API response goes through it.

Nothing the network returns is trusted:
- only http and https; at most `max_redirects` redirects, each one checked again;
- the host is resolved by our resolver, which refuses private, loopback, link-local, multicast, reserved and
  cloud-metadata addresses (everything that is not globally routable), and the connection goes to the
  address that was checked, so a DNS answer cannot change between check and connect (no rebinding);
- a byte cap enforced while streaming (after decompression, so a gzip bomb stops at the cap);
- a total deadline over redirects and retries; a per-host concurrency limit;
- retries with backoff on 429 and 5xx (honouring Retry-After) and on connection errors.

Endpoints the user configured (a search API, a SearXNG instance, the summariser) are `trusted_hosts`:
the address rule does not apply to them, since the user chose them, not the network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from pydantic import BaseModel

from gensearcher._http import backoff, retry_after_seconds
from gensearcher.config import FetchConfig
from gensearcher.errors import ToolError

logger = logging.getLogger(__name__)

_RETRY_STATUS = {429, 500, 502, 503, 504}
_REDIRECT_STATUS = {301, 302, 303, 307, 308}
_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}


class FetchError(ToolError):
    """A fetch was refused or failed. `reason` is one of: scheme, blocked_address, redirects, too_large,
    timeout, http_status, connection."""

    def __init__(self, reason: str, message: str, *, status: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.status = status


class FetchResult(BaseModel):
    url: str  # after redirects
    status: int
    content_type: str
    body: bytes
    redirects: list[str] = []
    retry_after: float | None = None


class AddressPolicy:
    """Which IP addresses may be contacted."""

    def __init__(self, *, allow_private: bool, allowed_networks: Iterable[str] = ()):
        self.allow_private = allow_private
        self.allowed = [ipaddress.ip_network(network, strict=False) for network in allowed_networks]

    def allows(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.allowed):
            return True
        if self.allow_private:
            return not ip.is_unspecified
        return ip.is_global and not ip.is_multicast


class _GuardedResolver(AbstractResolver):
    """Resolves with the system resolver, then drops every address the policy refuses."""

    def __init__(self, policy: AddressPolicy, trusted_hosts: set[str]):
        self._inner = ThreadedResolver()
        self._policy = policy
        self._trusted = trusted_hosts

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if host.lower() in self._trusted:
            return results
        allowed = [result for result in results if self._policy.allows(result["host"])]
        if not allowed:
            raise BlockedAddress(host, [result["host"] for result in results])
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class BlockedAddress(Exception):
    """Raised inside aiohttp's connector; turned into a FetchError by the fetcher."""

    def __init__(self, host: str, addresses: list[str]):
        super().__init__(f"{host} resolves only to refused addresses ({', '.join(sorted(set(addresses)))})")


class Fetcher:
    """`await fetcher.fetch(url)` -> FetchResult, or a FetchError that says why not."""

    def __init__(self, config: FetchConfig, *, trusted_hosts: Iterable[str] = ()):
        self.config = config
        self.policy = AddressPolicy(allow_private=config.allow_private_networks, allowed_networks=config.allowed_networks)
        self.trusted_hosts = {host.lower() for host in trusted_hosts if host}
        self._session: aiohttp.ClientSession | None = None
        self._host_limits: dict[str, asyncio.Semaphore] = {}
        self.requests_sent = 0  # every HTTP request that left this process (for tests and benchmarks)

    def trust(self, *urls: str | None) -> None:
        """Exempt the hosts of user-configured endpoints from the address rule."""
        for url in urls:
            if url:
                host = urlsplit(url).hostname
                if host:
                    self.trusted_hosts.add(host.lower())

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=_GuardedResolver(self.policy, self.trusted_hosts), limit=256, ttl_dns_cache=60
            )
            # trust_env=False: a proxy would connect to addresses we never checked.
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, auto_decompress=True,
                headers={"user-agent": self.config.user_agent},
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, url: str, *, method: str = "GET", json: Any = None, data: Any = None,
                    headers: dict[str, str] | None = None, max_bytes: int | None = None,
                    timeout_s: float | None = None, accept_status: Iterable[int] = ()) -> FetchResult:
        """Fetch `url` within the deadline. Non-2xx answers raise FetchError unless in `accept_status`."""
        deadline = time.monotonic() + (timeout_s or self.config.timeout_s)
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):
                return await self._fetch_with_retries(url, method, json, data, headers or {},
                                                      max_bytes or self.config.max_bytes, deadline, set(accept_status))
        except TimeoutError:
            raise FetchError("timeout", f"{_short(url)} did not answer within {timeout_s or self.config.timeout_s:g} s") from None

    async def _fetch_with_retries(self, url: str, method: str, json: Any, data: Any, headers: dict[str, str],
                                  max_bytes: int, deadline: float, accept: set[int]) -> FetchResult:
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await self._follow_redirects(url, method, json, data, headers, max_bytes)
            except FetchError as exc:
                if exc.reason != "connection" or attempt > self.config.max_retries:
                    raise
                delay = backoff(attempt, base=0.25, cap=10.0)
            else:
                if 200 <= result.status < 300 or result.status in accept:
                    return result
                retry_after = result.status in _RETRY_STATUS and attempt <= self.config.max_retries
                if not retry_after:
                    raise FetchError("http_status", f"{_short(result.url)} answered HTTP {result.status}", status=result.status)
                delay = result.retry_after if result.retry_after is not None else backoff(attempt, base=0.25, cap=10.0)
            if time.monotonic() + delay >= deadline:
                raise FetchError("timeout", f"{_short(url)}: no time left to retry")
            await asyncio.sleep(delay)

    async def _follow_redirects(self, url: str, method: str, json: Any, data: Any, headers: dict[str, str],
                                max_bytes: int) -> FetchResult:
        redirects: list[str] = []
        current = url
        while True:
            self._check_url(current)
            status, response_headers, body = await self._request_once(current, method, json, data, headers, max_bytes)
            if status in _REDIRECT_STATUS and "location" in response_headers:
                if len(redirects) >= self.config.max_redirects:
                    raise FetchError("redirects", f"{_short(url)} redirected more than {self.config.max_redirects} times")
                redirects.append(current)
                current = urljoin(current, response_headers["location"])
                if status == 303 or (status in (301, 302) and method == "POST"):
                    method, json, data = "GET", None, None
                continue
            content_type = response_headers.get("content-type", "").split(";")[0].strip().lower()
            return FetchResult(url=current, status=status, content_type=content_type, body=body, redirects=redirects,
                               retry_after=retry_after_seconds(response_headers.get("retry-after")))

    async def check_destination(self, url: str) -> None:
        """Refuse `url` if it could not be fetched under the address rule, without connecting to it."""
        self._check_url(url)
        host = (urlsplit(url).hostname or "").lower()
        if host in self.trusted_hosts:
            return
        try:
            ipaddress.ip_address(host)
            return  # a literal address was checked by _check_url
        except ValueError:
            pass
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None)
        except OSError as exc:
            raise FetchError("connection", f"cannot resolve {host}: {exc}") from None
        addresses = {str(info[4][0]) for info in infos}
        if not addresses or not all(self.policy.allows(address) for address in addresses):
            raise FetchError("blocked_address", f"{host} resolves to a refused address")

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError("scheme", f"only http and https URLs can be fetched, not {parts.scheme or 'no scheme'!r}")
        host = (parts.hostname or "").lower()
        if not host:
            raise FetchError("scheme", f"the URL {_short(url)} has no host")
        if host in self.trusted_hosts:
            return
        if host in _METADATA_HOSTS:
            raise FetchError("blocked_address", f"{host} is a cloud metadata host and is never fetched")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return  # a name: the resolver checks every address it resolves to
        if not self.policy.allows(host):
            raise FetchError("blocked_address", f"{host} is a private, loopback or reserved address and is not fetched")

    async def _request_once(self, url: str, method: str, json: Any, data: Any, headers: dict[str, str],
                            max_bytes: int) -> tuple[int, dict[str, str], bytes]:
        host = (urlsplit(url).hostname or "").lower()
        limit = self._host_limits.setdefault(host, asyncio.Semaphore(self.config.per_host_concurrency))
        async with limit:
            self.requests_sent += 1
            try:
                async with self._client().request(method, url, json=json, data=data, headers=headers,
                                                  allow_redirects=False) as response:
                    response_headers = {key.lower(): value for key, value in response.headers.items()}
                    declared = response.content_length
                    if declared is not None and declared > max_bytes and response.status < 300:
                        raise FetchError("too_large", f"{_short(url)} is {declared} bytes; the cap is {max_bytes}")
                    body = bytearray()
                    async for chunk in response.content.iter_chunked(65_536):
                        body.extend(chunk)
                        if len(body) > max_bytes:
                            raise FetchError("too_large", f"{_short(url)} sent more than {max_bytes} bytes")
                    return response.status, response_headers, bytes(body)
            except BlockedAddress as exc:
                raise FetchError("blocked_address", str(exc)) from None
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.__cause__, BlockedAddress) or isinstance(exc.os_error, BlockedAddress):
                    raise FetchError("blocked_address", str(exc.__cause__ or exc.os_error)) from None
                raise FetchError("connection", f"cannot connect to {host}: {exc.os_error}") from None
            except aiohttp.ClientPayloadError as exc:
                raise FetchError("connection", f"{_short(url)} sent a broken body: {type(exc).__name__}") from None
            except aiohttp.ClientError as exc:
                raise FetchError("connection", f"{_short(url)}: {type(exc).__name__}") from None


def _loop_time(deadline: float) -> float:
    """Convert a time.monotonic() deadline to the event loop's clock."""
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())


def _short(url: str, limit: int = 120) -> str:
    return url if len(url) <= limit else url[: limit - 3] + "..."
