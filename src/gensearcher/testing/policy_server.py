"""A scripted OpenAI-compatible chat server (vLLM flavour) for tests, demos and benchmarks.

Each conversation is identified by its first user message (the task prompt); the n-th request of a
conversation (n = assistant messages already in it) gets the n-th reply of that task's script. A script
entry is a string (the assistant text) or a `Reply` with a status code, delay or finish reason, so every
error mode is reachable. An error entry is used up when served: the client's retry of the same turn gets
the next entry, so `[Reply(status=429), "text"]` scripts a 429 followed by a successful retry. A callable script gets the parsed request and returns the reply.

The server checks what it receives like vLLM does (base64 data URLs, logprobs parameters) and records
every request in `server.requests` for assertions.

Run it from the shell for a demo:  python -m gensearcher.testing --script script.json
"""


import argparse
import asyncio
import base64
import binascii
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gensearcher.testing.threaded_server import ThreadedUvicorn


class Reply(BaseModel):
    text: str = ""
    finish_reason: str = "stop"
    status: int = 200
    error: str | None = None
    delay_s: float = 0.0
    retry_after: float | None = None
    reasoning: str | None = None


Script = dict[str, list[str | Reply]] | Callable[[dict[str, Any]], str | Reply]


class ScriptedPolicyServer:
    """`with ScriptedPolicyServer(script, model="m") as server: ... server.base_url ...`"""

    def __init__(self, script: Script, *, model: str = "scripted", default: str | Reply | None = None,
                 latency_s: float = 0.0, api_key: str | None = None, record: bool = True):
        self.script = script
        self.model = model
        self.default = default
        self.latency_s = latency_s
        self.api_key = api_key
        self.record = record
        self.requests: list[dict[str, Any]] = []
        self._errors_served: dict[str, int] = {}
        self._lock = threading.Lock()
        self._http = ThreadedUvicorn(self.asgi_app())

    @property
    def base_url(self) -> str:
        return self._http.url + "/v1"

    def __enter__(self) -> "ScriptedPolicyServer":
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.stop()

    def reply_for(self, body: dict[str, Any]) -> Reply:
        if callable(self.script):
            chosen = self.script(body)
        else:
            messages = body.get("messages", [])
            task = next((_text_of(m) for m in messages if m.get("role") == "user"), "")
            turn = sum(1 for m in messages if m.get("role") == "assistant")
            with self._lock:
                turn += self._errors_served.get(task, 0)
            entries = self.script.get(task)
            if entries is not None and turn < len(entries):
                chosen = entries[turn]
            elif self.default is not None:
                chosen = self.default
            else:
                return Reply(status=400, error=f"no scripted reply for turn {turn} of task {task[:60]!r}")
        reply = Reply(text=chosen) if isinstance(chosen, str) else chosen
        if reply.status != 200 and not callable(self.script):
            with self._lock:
                self._errors_served[task] = self._errors_served.get(task, 0) + 1
        return reply

    def asgi_app(self) -> Any:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse

        app = FastAPI()

        def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
            body = {"error": {"message": message, "type": "BadRequestError" if status == 400 else "Error",
                              "param": None, "code": status}}
            return JSONResponse(body, status_code=status, headers=headers)

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "gensearcher"}]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Any:
            if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
                return JSONResponse({"error": "Unauthorized"}, status_code=401)
            try:
                body = await request.json()
            except ValueError:
                return error(400, "request body is not JSON")
            problem = _check_request(body)
            if problem:
                return error(400, problem)
            if self.record:
                with self._lock:
                    self.requests.append(body)
            reply = self.reply_for(body)
            delay = self.latency_s + reply.delay_s
            if delay:
                await asyncio.sleep(delay)
            if reply.status != 200:
                headers = {"retry-after": str(reply.retry_after)} if reply.retry_after is not None else None
                return error(reply.status, reply.error or "scripted error", headers)
            return _completion(body, reply, self.model)

        return app


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


def _check_request(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return "messages must be a non-empty list"
    if body.get("top_logprobs") and not body.get("logprobs"):
        return "top_logprobs requires logprobs to be true"
    if (body.get("top_logprobs") or 0) > 20:
        return f"Requested sample logprobs of {body['top_logprobs']}, which is greater than max allowed: 20"
    for message in body["messages"]:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if part.get("type") == "image_url" or "image_url" in part:
                    url = part.get("image_url", {}).get("url", "")
                    if url.startswith("data:"):
                        header, _, data = url.partition(",")
                        if not header.endswith(";base64"):
                            return "Only base64 data URLs are supported for now."
                        try:
                            base64.b64decode(data, validate=True)
                        except (binascii.Error, ValueError):
                            return "invalid base64 in image data URL"
    return None


def _fake_tokens(text: str) -> list[int]:
    """A deterministic stand-in tokenizer: one token per UTF-8 byte."""
    return list(text.encode("utf-8"))


def _completion(body: dict[str, Any], reply: Reply, model: str) -> dict[str, Any]:
    completion_ids = _fake_tokens(reply.text)
    # A stand-in prompt count: about four characters a token.
    prompt_chars = sum(len(_text_of(m)) for m in body["messages"])
    prompt_tokens = prompt_chars // 4 + 4 * len(body["messages"])
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.reasoning is not None:
        message["reasoning_content"] = reply.reasoning
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": reply.finish_reason,
                              "stop_reason": None, "logprobs": None}
    if body.get("logprobs"):
        choice["logprobs"] = {"content": [
            {"token": chr(t) if t < 128 else f"token_id:{t}", "logprob": -0.5, "bytes": [t], "top_logprobs": []}
            for t in completion_ids
        ]}
    payload: dict[str, Any] = {
        "id": f"chatcmpl-{time.monotonic_ns()}", "object": "chat.completion", "created": int(time.time()),
        "model": model, "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(completion_ids),
                  "total_tokens": prompt_tokens + len(completion_ids)},
    }
    if body.get("return_token_ids"):
        choice["token_ids"] = completion_ids
        payload["prompt_token_ids"] = _fake_tokens(json.dumps(body["messages"], ensure_ascii=False))[:prompt_tokens]
    return payload


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", type=Path, required=True, help='JSON: {"task prompt": ["turn 1", ...]}')
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default="scripted")
    parser.add_argument("--latency-s", type=float, default=0.0, help="Added to every reply (simulated model time).")
    args = parser.parse_args(argv)
    script = json.loads(args.script.read_text(encoding="utf-8"))
    import uvicorn

    server = ScriptedPolicyServer(script, model=args.model, latency_s=args.latency_s, record=False)
    uvicorn.run(server.asgi_app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
