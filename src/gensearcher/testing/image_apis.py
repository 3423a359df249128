"""Local stand-ins for the image APIs, speaking their wire formats (see shared wire-formats notes):
OpenAI Images (`/v1/images/generations`, multipart `/v1/images/edits`), Gemini `generateContent`
(`/v1beta/...` and `/v1/...`), and Volcengine Ark Seedream (`/api/v3/images/generations`).

Each answers with a solid-colour PNG whose size follows the request, checks its vendor's auth header
(key "test-key"), and records every request. Prompts select failures: "moderate" (the vendor's
moderation error), "ratelimit" (one 429, then success), "boom" (500), "unavailable"
(OpenAI: 503 every time, Retry-After 0), "blocked" (Gemini: 200 with no image),
"notimage" (Gemini: an inline part that is not an image), "jpeg" (Gemini: a JPEG part). Ark answers with JPEG,
as the real service does. `delay_s` makes every image answer take that long (a benchmark's stand-in for the
vendor's generation time).
"""

import asyncio
import base64
import hashlib
import io
import threading
from typing import Any

from gensearcher.testing.threaded_server import ThreadedUvicorn

KEY = "test-key"


def _png(width: int, height: int, color: tuple[int, int, int] = (30, 160, 90), kind: str = "PNG") -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format=kind)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _size(text: str | None, default: tuple[int, int] = (64, 64)) -> tuple[int, int]:
    if not text or "x" not in str(text):
        return default
    width, height = (int(part) for part in str(text).split("x"))
    return width, height


class ImageApis:
    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.requests: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self._limited: set[str] = set()
        self._http = ThreadedUvicorn(self._app())

    @property
    def url(self) -> str:
        return self._http.url

    def __enter__(self) -> "ImageApis":
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.stop()

    def _rate_limited_once(self, vendor: str, prompt: str) -> bool:
        with self._lock:
            if prompt == "ratelimit" and vendor not in self._limited:
                self._limited.add(vendor)
                return True
        return False

    def _app(self) -> Any:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse

        app = FastAPI()

        def openai_error(status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> Any:
            return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}},
                                status_code=status, headers=headers)

        async def pause() -> None:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)

        def openai_common(prompt: str, request: Request) -> Any:
            if request.headers.get("authorization") != f"Bearer {KEY}":
                return openai_error(401, "Incorrect API key provided")
            if prompt == "moderate":
                return openai_error(400, "Your request was rejected by the safety system.", "moderation_blocked")
            if self._rate_limited_once("openai", prompt):
                return openai_error(429, "Rate limit reached", headers={"retry-after": "0"})
            if prompt == "boom":
                return openai_error(500, "The server had an error")
            if prompt == "unavailable":
                return openai_error(503, "The engine is currently overloaded", headers={"retry-after": "0"})
            return None

        @app.post("/v1/images/generations")
        async def generations(request: Request) -> Any:
            body = await request.json()
            self.requests.append(("openai.generations", body))
            failure = openai_common(body.get("prompt", ""), request)
            if failure is not None:
                return failure
            await pause()
            width, height = _size(body.get("size"))
            return {"created": 1, "data": [{"b64_json": _png(width, height)}]}

        @app.post("/v1/images/edits")
        async def edits(request: Request) -> Any:
            async with request.form() as form:
                images = [await part.read() for key in ("image", "image[]") for part in form.getlist(key)
                          if not isinstance(part, str)]
                fields = {key: str(value) for key, value in form.items() if key not in ("image", "image[]")}
            self.requests.append(("openai.edits", {**fields, "images": len(images)}))
            failure = openai_common(fields.get("prompt", ""), request)
            if failure is not None:
                return failure
            if not images:
                return openai_error(400, "image is required")
            await pause()
            width, height = _size(fields.get("size"))
            # Another prompt, another picture (as a real model draws): a judge (and its cache) never sees two
            # answers as one, even among the hundreds of rollouts of a training step.
            digest = hashlib.sha256(fields.get("prompt", "").encode()).digest()
            return {"created": 1, "data": [{"b64_json": _png(width, height, (digest[0], digest[1], digest[2]))}]}

        @app.post("/{version}/models/{model_action}")
        async def gemini(version: str, model_action: str, request: Request) -> Any:
            body = await request.json()
            self.requests.append(("gemini", {"version": version, "model": model_action, **body}))
            if request.headers.get("x-goog-api-key") != KEY:
                return JSONResponse({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                                               "status": "INVALID_ARGUMENT"}}, status_code=400)
            parts = body["contents"][0]["parts"]
            prompt = next((p["text"] for p in parts if "text" in p), "")
            for part in parts:
                inline = part.get("inlineData") or part.get("inline_data")
                if inline:
                    base64.b64decode(inline.get("data", ""), validate=True)
            if self._rate_limited_once("gemini", prompt):
                return JSONResponse({"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}},
                                    status_code=429)
            await pause()
            if prompt == "blocked":
                return {"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "IMAGE_SAFETY"}]}
            data, mime = _png(48, 64), "image/png"
            if prompt == "notimage":
                data = base64.b64encode(b"<html>quota exceeded</html>").decode("ascii")
            elif prompt == "jpeg":
                data, mime = _png(48, 64, kind="JPEG"), "image/jpeg"
            return {"candidates": [{"content": {"role": "model", "parts": [
                {"text": "Here is your image."}, {"inlineData": {"mimeType": mime, "data": data}}]},
                "finishReason": "STOP", "index": 0}], "modelVersion": model_action.split(":")[0]}

        @app.post("/api/v3/images/generations")
        async def seedream(request: Request) -> Any:
            body = await request.json()
            self.requests.append(("seedream", body))
            if request.headers.get("authorization") != f"Bearer {KEY}":
                return JSONResponse({"error": {"code": "AuthenticationError", "message": "invalid key", "type": "Unauthorized"}},
                                    status_code=401)
            prompt = body.get("prompt", "")
            if prompt == "moderate":
                return JSONResponse({"error": {"code": "OutputImageSensitiveContentDetected", "message": "sensitive",
                                               "param": "", "type": "BadRequest"}}, status_code=400)
            if self._rate_limited_once("seedream", prompt):
                return JSONResponse({"error": {"code": "RateLimitExceeded.EndpointRPMExceeded", "message": "slow down",
                                               "type": "TooManyRequests"}}, status_code=429)
            images = body.get("image") or []
            if isinstance(images, str):
                images = [images]
            if len(images) > 14:
                return JSONResponse({"error": {"code": "InvalidParameter", "message": "too many images", "param": "image",
                                               "type": "BadRequest"}}, status_code=400)
            await pause()
            width, height = _size(body.get("size"), (96, 96))
            item = {"b64_json": _png(width, height, (10, 10, 250), kind="JPEG"), "size": f"{width}x{height}"}
            return {"model": body.get("model"), "created": 1, "data": [item],
                    "usage": {"generated_images": 1, "output_tokens": 1, "total_tokens": 1}}

        return app
