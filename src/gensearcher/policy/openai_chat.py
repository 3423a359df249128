"""Policy backend for any OpenAI-compatible chat server (vLLM, SGLang, OpenAI, ...).

Speaks `POST {base_url}/chat/completions` directly over aiohttp, so vLLM's extensions (token ids) are
first-class. aiohttp rather than httpx: with hundreds of trajectories in flight, httpx's connection pool
cost 24 ms of CPU per request here, aiohttp 0.4 ms (benchmarks/agent_overhead.py). Images travel as base64 data URLs of the files in the message: those files are already
capped to the policy's pixel budget, so what the server receives is exactly what the trajectory records.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import aiohttp

from gensearcher._http import backoff, error_message, retry_after_seconds
from gensearcher._redact import Redactor
from gensearcher.config import PolicyConfig, env_name
from gensearcher.errors import ConfigError, ContextLengthExceeded, PolicyError
from gensearcher.messages import ImageRef, Message
from gensearcher.policy.base import PolicyResponse, TokenUsage

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_CONTEXT_ERROR = re.compile(r"maximum context length|context length|context window|prompt is too long", re.I)


class OpenAIChatPolicy:
    """`complete()` over the OpenAI chat-completions wire protocol, with retries and a total deadline."""

    def __init__(self, config: PolicyConfig, *, max_connections: int = 256):
        if not config.base_url or not config.model:
            # A setting the user left out, not a failure of the endpoint: exit 2, before any work.
            raise ConfigError("the openai policy backend needs base_url and model "
                              f"(for the policy: {env_name('policy', 'base_url')}, {env_name('policy', 'model')})")
        self.config = config
        self._headers = {"content-type": "application/json"}
        if config.api_key is not None and config.api_key.get_secret_value():
            self._headers["authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._redact = Redactor([config.api_key])  # a failing endpoint may echo the key it was sent
        self._max_connections = max_connections
        # Proxy settings are read once here: aiohttp's trust_env re-reads the environment (and ~/.netrc) on
        # every request, which doubled the client's CPU per round at 256 trajectories.
        self._proxy = _proxy_for(self._url)
        self._session: aiohttp.ClientSession | None = None  # created inside the running event loop
        self._data_urls: OrderedDict[str, str] = OrderedDict()
        self._texts: OrderedDict[tuple[str, str], str] = OrderedDict()

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai", "model": self.config.model, "base_url": self.config.base_url}

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers, trust_env=False)
        return self._session

    async def complete(self, messages: Sequence[Message], *, max_tokens: int) -> PolicyResponse:
        body = self._request_body(messages, max_tokens)
        started = time.monotonic()
        deadline = started + self.config.deadline_s
        attempt = 0
        while True:
            attempt += 1
            retry_after, problem = await self._attempt(body, deadline)
            if isinstance(problem, PolicyResponse):
                problem.latency_s = time.monotonic() - started
                problem.attempts = attempt
                return problem
            delay = retry_after if retry_after is not None else backoff(attempt)
            remaining = deadline - time.monotonic()
            if attempt > self.config.max_retries or remaining <= delay:
                raise PolicyError(f"policy endpoint failed after {attempt} attempt(s): {problem}")
            await asyncio.sleep(delay)

    async def _attempt(
        self, body: bytes, deadline: float
    ) -> tuple[float | None, PolicyResponse | str]:
        """One HTTP request: (None, response), or (Retry-After if any, a retryable problem)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PolicyError(f"policy call passed its {self.config.deadline_s:.0f} s deadline")
        timeout = aiohttp.ClientTimeout(total=min(self.config.request_timeout_s, remaining))
        try:
            # A stream, not bytes: a request with images is megabytes, which aiohttp would write in one
            # blocking call on the loop.
            async with self._client().post(self._url, data=io.BytesIO(body), timeout=timeout,
                                           proxy=self._proxy) as response:
                status, headers, raw = response.status, response.headers, await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            return None, f"{type(exc).__name__} talking to {self.config.base_url}"
        if status in _RETRY_STATUS:
            return retry_after_seconds(headers.get("retry-after")), f"HTTP {status}: {self._redact(error_message(raw))}"
        if status >= 400:
            message = self._redact(error_message(raw))
            if status == 400 and _CONTEXT_ERROR.search(message):
                raise ContextLengthExceeded(message)
            raise PolicyError(f"policy endpoint answered HTTP {status}: {message}")
        try:
            return None, _parse_response(json.loads(raw))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise PolicyError(f"policy endpoint sent an unreadable response: {exc}") from None

    def _request_body(self, messages: Sequence[Message], max_tokens: int) -> bytes:
        """The JSON body. Each round re-sends the whole conversation, so text messages are encoded once."""
        config = self.config
        body: dict[str, Any] = {
            "model": config.model,
            "max_tokens": max_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
        }
        if config.seed is not None:
            body["seed"] = config.seed
        if config.logprobs:
            body["logprobs"] = True
        if config.return_token_ids:
            body["return_token_ids"] = True
        encoded = ",".join(self._wire_json(message) for message in messages)
        return (json.dumps(body, ensure_ascii=False)[:-1] + f', "messages": [{encoded}]}}').encode("utf-8")

    def _wire_json(self, message: Message) -> str:
        if message.images:  # large (data URLs); the data-URL cache already saves the expensive part
            return json.dumps(self._wire_message(message), ensure_ascii=False)
        key = (message.role, message.text)  # str hashes are cached, so this lookup is cheap
        cached = self._texts.get(key)
        if cached is None:
            cached = json.dumps({"role": message.role, "content": message.text}, ensure_ascii=False)
            self._texts[key] = cached
            if len(self._texts) > 20_000:
                self._texts.popitem(last=False)
        return cached

    def _wire_message(self, message: Message) -> dict[str, Any]:
        if not message.images:
            return {"role": message.role, "content": message.text}
        parts: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": self._data_url(image)}} for image in message.images
        ]
        parts.append({"type": "text", "text": message.text})
        return {"role": message.role, "content": parts}

    def _data_url(self, image: ImageRef) -> str:
        # Every round re-sends the whole conversation; encode each image once.
        cached = self._data_urls.get(image.sha256)
        if cached is None:
            with open(image.path, "rb") as handle:
                cached = "data:image/jpeg;base64," + base64.b64encode(handle.read()).decode("ascii")
            self._data_urls[image.sha256] = cached
            if len(self._data_urls) > 512:
                self._data_urls.popitem(last=False)
        else:
            self._data_urls.move_to_end(image.sha256)
        return cached


def _proxy_for(url: str) -> str | None:
    """The proxy the environment asks for `url` (HTTP(S)_PROXY, NO_PROXY), or None."""
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    # Present on every platform, but missing from typeshed's stubs.
    if urllib.request.proxy_bypass_environment(parts.hostname or ""):  # type: ignore[attr-defined]
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)


def _parse_response(payload: dict[str, Any]) -> PolicyResponse:
    choice = payload["choices"][0]
    message = choice.get("message") or {}
    text = message.get("content") or ""
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if reasoning and "<think>" not in text:
        # A server-side reasoning parser split the thinking off; put it back where the protocol expects it.
        text = f"<think>\n{reasoning}\n</think>\n{text}"
    usage = payload.get("usage") or {}
    logprobs = None
    if isinstance(choice.get("logprobs"), dict) and choice["logprobs"].get("content") is not None:
        logprobs = [float(entry["logprob"]) for entry in choice["logprobs"]["content"]]
    return PolicyResponse(
        text=text,
        finish_reason=choice.get("finish_reason"),
        usage=TokenUsage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        ),
        prompt_token_ids=payload.get("prompt_token_ids"),
        completion_token_ids=choice.get("token_ids"),
        completion_logprobs=logprobs,
    )
