"""The hardened fetcher: every download of a page, an image or an API response goes through it.

Nothing the network returns is trusted:
- only http and https; at most `max_redirects` redirects, each one checked again;
- the host is checked in the form the connection will use (yarl's IDNA/NFKC-normalised host, so
  `http://１２７.０.０.１/` is 127.0.0.1), refused when it is, or resolves to, a private, loopback,
  link-local, multicast, reserved or cloud-metadata address, including IPv4 addresses embedded in IPv6
  (IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo). The check runs again in
  the connector for literals and for every resolved address, and the connection goes to the address that
  was checked, so a DNS answer cannot change between check and connect (no rebinding);
- a byte cap enforced while streaming (after decompression, so a gzip bomb stops at the cap);
- a total deadline over redirects and retries; a per-host concurrency limit;
- retries with backoff on 429 and 5xx (honouring Retry-After) and on connection errors;
- credential headers (authorization, API keys, cookies) never follow a redirect to another origin.

A Fetcher built with `endpoints` is the system's own client for the API endpoints the user configured
(a search API, SearXNG, Jina Reader): it fetches only URLs inside those endpoints (same scheme, host, port
and path prefix), for them the address rule is lifted (the user chose them, not the network), and it
follows redirects only within them. The tools' fetcher, which fetches URLs that came from the model, a
search result or a redirect, has no such exemption.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from pydantic import BaseModel
from yarl import URL

from gensearcher._http import backoff, retry_after_seconds
from gensearcher._redact import credential_headers
from gensearcher.config import FetchConfig
from gensearcher.errors import ToolError

logger = logging.getLogger(__name__)

_RETRY_STATUS = {429, 500, 502, 503, 504}
_REDIRECT_STATUS = {301, 302, 303, 307, 308}
_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


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


def embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to (6to4, NAT64, IPv4-compatible, Teredo)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = []
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if any(ip in network for network in _NAT64) or ip in _IPV4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


class AddressPolicy:
    """Which IP addresses may be contacted."""

    def __init__(self, *, allow_private: bool, allowed_networks: Iterable[str] = ()):
        self.allow_private = allow_private
        self.allowed = [ipaddress.ip_network(network, strict=False) for network in allowed_networks]

    def allows(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # the same address as the IPv4 one
        # An IPv6 address that embeds an IPv4 one reaches that IPv4 address through a gateway: both must pass.
        return all(self._allows_one(candidate) for candidate in (ip, *embedded_ipv4(ip)))

    def _allows_one(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if any(ip in network for network in self.allowed):
            return True
        if self.allow_private:
            return not ip.is_unspecified
        return ip.is_global and not ip.is_multicast


class Target(NamedTuple):
    """A URL in the form the connection uses: yarl's normalised scheme, ASCII host, port and path."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


def parse_target(url: str) -> Target:
    """The URL as aiohttp will connect to it; FetchError for what is not a well-formed http(s) URL."""
    try:
        parsed = URL(url)
        scheme, host, port = parsed.scheme.lower(), parsed.raw_host, parsed.port
    except (ValueError, TypeError, UnicodeError):
        raise FetchError("scheme", f"the URL {_short(url)!r} is malformed") from None
    if scheme not in ("http", "https"):
        raise FetchError("scheme", f"only http and https URLs can be fetched, not {_short(scheme) or 'no scheme'!r}")
    if not host or port is None:
        raise FetchError("scheme", f"the URL {_short(url)} has no host")
    return Target(scheme, host.lower().rstrip("."), port, parsed.raw_path or "/")


def _literal(host: str) -> str | None:
    """The address of an IP-literal host (zone id dropped), or None for a name."""
    try:
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        return None


class _GuardedResolver(AbstractResolver):
    """Resolves with the system resolver, then drops every address the policy refuses."""

    def __init__(self, policy: AddressPolicy, trusted_hosts: frozenset[str]):
        self._inner = ThreadedResolver()
        self._policy = policy
        self._trusted = trusted_hosts

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if host.lower().rstrip(".") in self._trusted:
            return results
        allowed = [result for result in results if self._policy.allows(result["host"])]
        if not allowed:
            raise BlockedAddress(host, [result["host"] for result in results])
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class _GuardedConnector(aiohttp.TCPConnector):
    """aiohttp connects to IP literals without asking the resolver; this checks them at connect time too."""

    def __init__(self, policy: AddressPolicy, trusted_hosts: frozenset[str], **kwargs: Any):
        super().__init__(resolver=_GuardedResolver(policy, trusted_hosts), **kwargs)
        self._guard_policy = policy
        self._guard_trusted = trusted_hosts

    async def _resolve_host(self, host: str, port: int, traces: Sequence[Any] | None = None) -> list[ResolveResult]:
        address = _literal(host)
        if address is not None and host.lower() not in self._guard_trusted and not self._guard_policy.allows(address):
            raise BlockedAddress(host, [address])
        return await super()._resolve_host(host, port, traces)


class BlockedAddress(FetchError):
    """Raised inside aiohttp's connector; turned into a plain FetchError by the fetcher."""

    def __init__(self, host: str, addresses: list[str]):
        super().__init__("blocked_address",
                         f"{_short(host)} resolves only to refused addresses ({', '.join(sorted(set(addresses)))})")


class Fetcher:
    """`await fetcher.fetch(url)` -> FetchResult, or a FetchError that says why not.

    Args:
        config: caps, deadlines, retries and the address rule.
        endpoints: when given, this is an endpoint client: it fetches only URLs inside these configured
            endpoints (scheme, host, port, path prefix), exempt from the address rule.
    """

    def __init__(self, config: FetchConfig, *, endpoints: Iterable[str | None] = ()):
        self.config = config
        self.policy = AddressPolicy(allow_private=config.allow_private_networks, allowed_networks=config.allowed_networks)
        self.endpoints = tuple(dict.fromkeys(parse_target(url.rstrip("/")) for url in endpoints if url))
        self._trusted_hosts = frozenset(endpoint.host for endpoint in self.endpoints)
        self._session: aiohttp.ClientSession | None = None
        self._host_limits: dict[str, asyncio.Semaphore] = {}
        self.requests_sent = 0  # every HTTP request that left this process (for tests and benchmarks)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = _GuardedConnector(self.policy, self._trusted_hosts, limit=256, ttl_dns_cache=60)
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
        origin = self.check_url(url).origin
        while True:
            target = self.check_url(current, redirected=bool(redirects))
            if target.origin != origin:
                # Credentials were meant for the first origin only, never for where a redirect points.
                secret = credential_headers(headers)
                headers = {name: value for name, value in headers.items() if name not in secret}
            status, response_headers, body = await self._request_once(current, target, method, json, data, headers,
                                                                      max_bytes)
            if status in _REDIRECT_STATUS and "location" in response_headers:
                if len(redirects) >= self.config.max_redirects:
                    raise FetchError("redirects", f"{_short(url)} redirected more than {self.config.max_redirects} times")
                redirects.append(current)
                try:
                    current = urljoin(current, response_headers["location"])
                except ValueError:
                    raise FetchError("redirects", f"{_short(current)} redirected to a malformed URL") from None
                if status == 303 or (status in (301, 302) and method == "POST"):
                    method, json, data = "GET", None, None
                continue
            content_type = response_headers.get("content-type", "").split(";")[0].strip().lower()
            return FetchResult(url=current, status=status, content_type=content_type, body=body, redirects=redirects,
                               retry_after=retry_after_seconds(response_headers.get("retry-after")))

    async def check_destination(self, url: str) -> None:
        """Refuse `url` if it could not be fetched under the address rule, without connecting to it."""
        target = self.check_url(url)
        if self._endpoint_of(target) is not None or _literal(target.host) is not None:
            return  # a configured endpoint, or a literal address that check_url checked
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(target.host, None)
        except OSError as exc:
            raise FetchError("connection", f"cannot resolve {_short(target.host)}: {exc}") from None
        addresses = {str(info[4][0]) for info in infos}
        if not addresses or not all(self.policy.allows(address) for address in addresses):
            raise FetchError("blocked_address", f"{_short(target.host)} resolves to a refused address")

    def _endpoint_of(self, target: Target) -> Target | None:
        for endpoint in self.endpoints:
            if target.origin == endpoint.origin and (
                endpoint.path in ("", "/") or target.path == endpoint.path or target.path.startswith(endpoint.path + "/")
            ):
                return endpoint
        return None

    def check_url(self, url: str, *, redirected: bool = False) -> Target:
        target = parse_target(url)
        if self.endpoints:
            if self._endpoint_of(target) is None:
                what = "redirected outside the configured endpoints" if redirected else "is not a configured endpoint"
                raise FetchError("redirects" if redirected else "blocked_address", f"{_short(url)} {what}")
            return target
        if target.host in _METADATA_HOSTS:
            raise FetchError("blocked_address", f"{target.host} is a cloud metadata host and is never fetched")
        # "localhost" and its subdomains are loopback by definition (RFC 6761): refused without asking a
        # resolver, so a cached page of theirs is refused too.
        if (target.host == "localhost" or target.host.endswith(".localhost")) and not self.policy.allows("127.0.0.1"):
            raise FetchError("blocked_address", f"{_short(target.host)} is a loopback name and is not fetched")
        address = _literal(target.host)
        if address is not None and not self.policy.allows(address):
            raise FetchError("blocked_address", f"{address} is a private, loopback or reserved address and is not fetched")
        return target  # a name: the resolver checks every address it resolves to

    async def _request_once(self, url: str, target: Target, method: str, json: Any, data: Any,
                            headers: dict[str, str], max_bytes: int) -> tuple[int, dict[str, str], bytes]:
        host = target.host
        width = self.config.endpoint_concurrency if self.endpoints else self.config.per_host_concurrency
        limit = self._host_limits.setdefault(host, asyncio.Semaphore(width))
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
            except aiohttp.InvalidURL:
                raise FetchError("scheme", f"the URL {_short(url)!r} is malformed") from None
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.__cause__, BlockedAddress) or isinstance(exc.os_error, BlockedAddress):
                    raise FetchError("blocked_address", str(exc.__cause__ or exc.os_error)) from None
                raise FetchError("connection", f"cannot connect to {_short(host)}: {exc.os_error}") from None
            except aiohttp.ClientPayloadError as exc:
                raise FetchError("connection", f"{_short(url)} sent a broken body: {type(exc).__name__}") from None
            except aiohttp.ClientError as exc:
                raise FetchError("connection", f"{_short(url)}: {type(exc).__name__}") from None


def _loop_time(deadline: float) -> float:
    """Convert a time.monotonic() deadline to the event loop's clock."""
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())


def _short(url: str, limit: int = 120) -> str:
    return url if len(url) <= limit else url[: limit - 3] + "..."
