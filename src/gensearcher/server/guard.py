"""The generator server's outermost layer: the token, then the body cap, before any route reads a byte.

A pure ASGI middleware, so it runs before FastAPI parses anything: an unauthenticated request is answered
401 without its body being read, a declared Content-Length over the cap is answered 413 at once, and a
body without one (chunked) is counted as it streams in and cut off at the cap. Memory per request is
therefore bounded by `max_body_bytes` whatever the client sends.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gensearcher.errors import UserError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Probes need no token: they show status and counts, never the model's path or an image.
OPEN_PATHS = frozenset({"/health", "/metrics"})


class BodyTooLarge(UserError):
    """Raised from `receive` when a request body grows past the cap; the guard answers 413."""


def error_body(path: str, message: str, status: int) -> dict[str, Any]:
    """An OpenAI-shaped error under /v1/, the reference system's `{"success": false}` elsewhere."""
    if path.startswith("/v1/"):
        kind = "invalid_request_error" if status < 500 else "server_error"
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return {"success": False, "message": message}


class RequestGuard:
    """Args:
        app: the ASGI app behind the guard.
        token: the bearer token every path but OPEN_PATHS needs (None: no token).
        max_body_bytes: the body cap.
        count: called with the status of each refusal (for /metrics).
    """

    def __init__(self, app: Any, *, token: str | None, max_body_bytes: int, count: Callable[[int], None]):
        self.app = app
        self.expected = f"Bearer {token}".encode() if token is not None else None
        self.max_body_bytes = max_body_bytes
        self.count = count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.expected is not None and path not in OPEN_PATHS and not self._authorised(scope):
            await self._refuse(send, path, 401, "missing or wrong bearer token", {"www-authenticate": "Bearer"})
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(send, path, 413, self._too_large())
            return
        await self._guarded(scope, receive, send, path)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        received, overflow, started = 0, False, False

        async def counted_receive() -> Message:
            nonlocal received, overflow
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    overflow = True
                    raise BodyTooLarge(self._too_large())
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflow:
                return  # whatever the app made of the cut-off read, the client gets the 413 below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not overflow:
                raise
        if overflow and not started:
            await self._refuse(send, path, 413, self._too_large())

    def _authorised(self, scope: Scope) -> bool:
        given = next((value for name, value in scope.get("headers", ()) if name == b"authorization"), b"")
        assert self.expected is not None
        return hmac.compare_digest(given, self.expected)

    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_body_bytes} bytes"

    async def _refuse(self, send: Send, path: str, status: int, message: str,
                      headers: dict[str, str] | None = None) -> None:
        self.count(status)
        body = json.dumps(error_body(path, message, status)).encode()
        # Connection: close, because the unread rest of the body must not be taken for the next request.
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close"), *((k.encode(), v.encode()) for k, v in (headers or {}).items())]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP layer refuses a malformed length before the app sees it
    return None
