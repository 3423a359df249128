"""A small HTTPS client for the image APIs: retries on 429/5xx and connection errors (honouring
Retry-After), a total deadline, vendor error messages unwrapped, keys kept out of every message."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import aiohttp

from gensearcher._http import backoff, error_message, retry_after_seconds
from gensearcher._redact import Redactor
from gensearcher.config import VENDOR_DEFAULTS
from gensearcher.errors import ConfigError, GenerationError
from gensearcher.generate.base import DroppedReference, GenerationResult, as_png
from gensearcher.images import sniff_image_type
from gensearcher.web import Fetcher, FetchError

_RETRY = {408, 409, 429, 500, 502, 503, 504}


class ApiClient:
    def __init__(self, *, headers: dict[str, str], timeout_s: float, max_retries: int, fetcher: Fetcher | None = None):
        self._headers = headers
        self._redact = Redactor.from_headers(headers)  # a failing server may echo the key it was sent
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.fetcher = fetcher  # for image URLs the API answers with: they come from the network
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers, trust_env=True)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self.fetcher is not None:
            await self.fetcher.aclose()

    async def post(self, url: str, *, json_body: Any = None, form: Any = None) -> Any:
        """The decoded JSON answer of a successful POST. `form` is a callable building fresh FormData."""
        deadline = time.monotonic() + self.timeout_s
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GenerationError(f"no answer from {_host(url)} within {self.timeout_s:g} s")
            retry_after: float | None = None
            try:
                data = form() if form is not None else None
                # No redirects: the API key would follow them, and to another origin in a custom header.
                async with self._client().post(url, json=json_body, data=data, allow_redirects=False,
                                               timeout=aiohttp.ClientTimeout(total=remaining)) as response:
                    status, raw = response.status, await response.read()
                    retry_after = retry_after_seconds(response.headers.get("retry-after"))
            except TimeoutError:
                raise GenerationError(f"no answer from {_host(url)} within {self.timeout_s:g} s") from None
            except aiohttp.ClientError as exc:
                status, raw = 0, f"{type(exc).__name__}".encode()
            if 200 <= status < 300:
                try:
                    return json.loads(raw)
                except ValueError:
                    raise GenerationError(f"{_host(url)} answered with something that is not JSON") from None
            problem = self._redact(f"{_host(url)} answered " + (f"HTTP {status}: {error_message(raw)}" if status
                                                                else raw.decode()))
            if (status not in _RETRY and status != 0) or attempt > self.max_retries:
                raise GenerationError(problem)
            delay = retry_after if retry_after is not None else backoff(attempt, cap=20.0)
            if time.monotonic() + delay >= deadline:
                raise GenerationError(problem)
            await asyncio.sleep(delay)

    async def image_from(self, item: dict[str, Any], *, b64_keys: tuple[str, ...] = ("b64_json",),
                         url_keys: tuple[str, ...] = ("url",)) -> bytes:
        """Image bytes from an answer item: inline base64, or a URL fetched by the hardened fetcher."""
        for key in b64_keys:
            if item.get(key):
                try:
                    data = base64.b64decode(item[key], validate=True)
                except ValueError:
                    raise GenerationError("the API sent invalid base64") from None
                return checked_image(data)
        for key in url_keys:
            if item.get(key):
                if self.fetcher is None:
                    raise GenerationError("the API answered with an image URL, and no fetcher is configured")
                try:
                    return checked_image((await self.fetcher.fetch(str(item[key]))).body)
                except FetchError as exc:
                    raise GenerationError(f"cannot download the generated image: {exc}") from None
        raise GenerationError("the API answer holds no image")


def checked_image(data: bytes, vendor: str = "the API") -> bytes:
    """The bytes, when their signature is an image's."""
    if sniff_image_type(data) is None:
        raise GenerationError(f"{vendor} sent something that is not an image")
    return data


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc or url


def data_url_of(path: str) -> tuple[str, bytes, str]:
    """(data URL, bytes, mime type) of a reference image file."""
    from pathlib import Path

    if not Path(path).is_file():
        raise GenerationError(f"reference image not found: {path}")
    data = Path(path).read_bytes()
    kind = sniff_image_type(data)
    if kind is None:
        raise GenerationError(f"reference image {path} is not an image")
    mime = f"image/{kind}"
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii"), data, mime


class ApiGenerator:
    """What the vendor backends share: endpoint, model, reference cap, the client. Subclasses set `name`,
    `DEFAULT_BASE` (models and sizes default to config.VENDOR_DEFAULTS), and `auth_headers` when the vendor does not use a bearer token."""

    name = "api"
    DEFAULT_BASE = ""

    def __init__(self, config: Any, *, max_references: int, fetcher: Fetcher | None = None):
        if config.api_key is None:
            raise ConfigError(f"GENSEARCHER_GENERATOR_API_KEY is not set (the {self.name} API key).")
        default_model, default_size = VENDOR_DEFAULTS[self.name]
        self.base = (config.api_base_url or self.DEFAULT_BASE).rstrip("/")
        self.model = config.api_model or default_model
        self.size = config.api_size or default_size  # when the request sets no width and height
        self.max_references = max_references
        self.api = ApiClient(headers=self.auth_headers(config.api_key.get_secret_value()), timeout_s=config.timeout_s,
                             max_retries=config.max_retries, fetcher=fetcher)

    @staticmethod
    def auth_headers(key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    async def aclose(self) -> None:
        await self.api.aclose()

    def result(self, data: bytes, *, kept: list[str], dropped: list[DroppedReference], parameters: dict[str, Any],
               started: float) -> GenerationResult:
        """The result of one vendor answer: the image as PNG (the delivered format recorded), what was sent."""
        png, width, height, delivered = as_png(data)
        return GenerationResult(image_png=png, width=width, height=height, backend=self.name, model=self.model,
                                used_images=kept, dropped_references=dropped, parameters=parameters,
                                source_format=delivered, seconds=time.monotonic() - started)
