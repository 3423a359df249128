"""The `http` generator backend: our generator server, or servers with the reference system's API.

`POST {url}/generate` with `{"image_urls": [data URLs] | null, "prompt", "seed", "true_cfg_scale",
"negative_prompt", "num_inference_steps", "guidance_scale", "num_images_per_prompt"}` (plus width and
height when set), answered by `{"success": true, "image": <base64 PNG>}`.

Several servers (QWEN_EDIT_APP_URL, a JSON list or comma-separated) are balanced by least outstanding
requests, each with its own concurrency limit. A server that fails (connection error, 5xx, 429) is
marked down for a cooldown and probed on /health before it gets work again; requests are retried with
backoff on another server within a total deadline.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from gensearcher._http import backoff
from gensearcher._redact import Redactor
from gensearcher.config import GeneratorConfig
from gensearcher.errors import GenerationError
from gensearcher.generate.base import GenerationRequest, GenerationResult, image_info, split_references
from gensearcher.images import sniff_image_type

COOLDOWN_S = 15.0
MAX_RESPONSE_BYTES = 200_000_000


@dataclass
class _Server:
    url: str
    limit: asyncio.Semaphore
    outstanding: int = 0
    down_until: float = 0.0


class HttpGenerator:
    name = "http"

    def __init__(self, config: GeneratorConfig, *, max_references: int = 3):
        self.config = config
        self.max_references = max_references
        self.servers = [_Server(url.rstrip("/"), asyncio.Semaphore(config.per_url_concurrency)) for url in config.app_urls]
        self._headers = {"content-type": "application/json"}
        if config.server_token is not None:
            self._headers["authorization"] = f"Bearer {config.server_token.get_secret_value()}"
        self._redact = Redactor.from_headers(self._headers)  # a failing server may echo the token
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers, trust_env=False)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        kept, dropped = split_references(request, self.max_references)
        params = request.resolved(with_references=bool(kept))
        body = {
            "image_urls": [_data_url(path) for path in kept] or None,
            "prompt": request.prompt,
            "seed": params["seed"],
            "true_cfg_scale": params["true_cfg_scale"],
            "negative_prompt": params["negative_prompt"],
            "num_inference_steps": params["steps"],
            "guidance_scale": params["guidance_scale"] if params["guidance_scale"] is not None else 1.0,
            "num_images_per_prompt": 1,
            **({"width": params["width"], "height": params["height"]} if params["width"] else {}),
        }
        payload = json.dumps(body).encode()
        started = time.monotonic()
        deadline = started + self.config.timeout_s
        problem = "no attempt"
        for attempt in range(self.config.max_retries + 1):
            server = await self._choose(deadline)
            try:
                data = await self._post(server, payload, deadline)
            except _Retryable as exc:
                problem = str(exc)
                server.down_until = time.monotonic() + COOLDOWN_S
                delay = backoff(attempt + 1, cap=10.0)
                if time.monotonic() + delay >= deadline:
                    break
                await asyncio.sleep(delay)
                continue
            width, height = image_info(data)
            return GenerationResult(image_png=data, width=width, height=height, backend=self.name, model=server.url,
                                    used_images=kept, dropped_references=dropped, parameters=params,
                                    seconds=time.monotonic() - started)
        raise GenerationError(f"the generator servers failed: {problem}")

    async def _choose(self, deadline: float) -> _Server:
        """The up server with the fewest requests in flight; a down one is probed before use."""
        now = time.monotonic()
        up = [server for server in self.servers if server.down_until <= now]
        if up:
            return min(up, key=lambda server: (server.outstanding, random.random()))
        candidate = min(self.servers, key=lambda server: server.down_until)
        if await self._healthy(candidate, deadline):
            candidate.down_until = 0.0
        return candidate

    async def _healthy(self, server: _Server, deadline: float) -> bool:
        timeout = aiohttp.ClientTimeout(total=max(0.1, min(5.0, deadline - time.monotonic())))
        try:
            async with self._client().get(server.url + "/health", timeout=timeout) as response:
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def _post(self, server: _Server, payload: bytes, deadline: float) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise GenerationError("the generation deadline passed")
        server.outstanding += 1
        try:
            async with server.limit:
                timeout = aiohttp.ClientTimeout(total=deadline - time.monotonic())
                # A stream, not bytes: aiohttp writes a large bytes body in one blocking call on the loop.
                async with self._client().post(server.url + self.config.app_path, data=io.BytesIO(payload),
                                               timeout=timeout) as response:
                    raw = await _read_body(response, MAX_RESPONSE_BYTES)
                    status = response.status
        except TimeoutError:
            raise GenerationError(f"{server.url} did not answer before the deadline") from None
        except aiohttp.ClientError as exc:
            raise _Retryable(f"{server.url}: {type(exc).__name__}") from None
        finally:
            server.outstanding -= 1
        if raw is None:
            raise GenerationError(f"{server.url} sent more than {MAX_RESPONSE_BYTES} bytes")
        answer = _json(raw)
        message = str(answer.get("message") or answer.get("error") or raw[:200]) if isinstance(answer, dict) else str(raw[:200])
        message = self._redact(message)
        if status == 429 or status >= 500:
            raise _Retryable(f"{server.url} answered HTTP {status}: {message}")
        if status != 200 or not isinstance(answer, dict) or not answer.get("success") or not answer.get("image"):
            raise GenerationError(f"{server.url} answered HTTP {status}: {message}")
        try:
            data = base64.b64decode(answer["image"], validate=True)
        except ValueError:
            raise GenerationError(f"{server.url} sent an image that is not valid base64") from None
        if sniff_image_type(data) is None:
            raise GenerationError(f"{server.url} sent something that is not an image")
        return data


class _Retryable(GenerationError):
    """One attempt failed in a way another attempt (or another server) may not."""


async def _read_body(response: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The whole body, or None once it passes `cap` bytes. (`content.read(n)` would return only what
    happens to be buffered: a 1328 px image arrives in many pieces.)"""
    if response.content_length is not None and response.content_length > cap:
        return None
    chunks, total = [], 0
    async for chunk in response.content.iter_chunked(1 << 20):
        total += len(chunk)
        if total > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _data_url(path: str) -> str:
    data = Path(path).read_bytes() if Path(path).is_file() else None
    if data is None:
        raise GenerationError(f"reference image not found: {path}")
    kind = sniff_image_type(data)
    if kind is None:
        raise GenerationError(f"reference image {path} is not an image")
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")
