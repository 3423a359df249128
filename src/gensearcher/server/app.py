"""The generator server: FastAPI in front of a pool of pipeline workers.

    POST /generate               the reference system's request and response, so its clients work as is
    POST /v1/images/generations  OpenAI-compatible (JSON)
    POST /v1/images/edits        OpenAI-compatible (multipart: `image` or `image[]` parts)
    GET  /v1/files/{id}.png      images answered with response_format=url
    GET  /health, GET /metrics   status; Prometheus text

Safe by default: binds 127.0.0.1 (see `gensearcher serve`), optional bearer token, limits on image count,
bytes and pixels, image URLs only through the hardened fetcher and only when enabled, errors as JSON
without tracebacks.
"""

import base64
import binascii
import hmac
import io
import logging
import secrets
import time
from collections import Counter, OrderedDict
from contextlib import asynccontextmanager
from typing import Any

from pydantic import BaseModel, Field

from gensearcher.config import FetchConfig, ServerConfig
from gensearcher.generate.base import EDIT_GUIDANCE, EDIT_STEPS, NEGATIVE_PROMPT, TRUE_CFG_SCALE
from gensearcher.images import sniff_image_type
from gensearcher.server.workers import NoCapableWorker, QueueFull, WorkerFailure, WorkerPool

logger = logging.getLogger(__name__)


class InputError(Exception):
    """A bad request (status 400 unless given)."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers


class ReferenceGenerateRequest(BaseModel):
    """The reference system's /generate body (plus optional width and height)."""

    image_urls: list[str] | None = None
    prompt: str = Field(..., min_length=1)
    seed: int = 0
    true_cfg_scale: float = TRUE_CFG_SCALE
    negative_prompt: str = NEGATIVE_PROMPT
    num_inference_steps: int = Field(EDIT_STEPS, ge=1, le=500)
    guidance_scale: float = EDIT_GUIDANCE
    num_images_per_prompt: int = Field(1, ge=1, le=1)
    width: int | None = Field(None, ge=16, le=8192)
    height: int | None = Field(None, ge=16, le=8192)


class OpenAIGenerateRequest(BaseModel):
    prompt: str = Field(..., min_length=1)
    model: str | None = None
    n: int = Field(1, ge=1, le=1)
    size: str | None = "auto"
    response_format: str | None = "b64_json"
    seed: int | None = None
    model_config = {"extra": "allow"}  # quality, background, output_format ...: accepted, not used


class ImageServer:
    """The state behind the app: the pool, the limits, the fetcher, recent images for url responses."""

    def __init__(self, pool: WorkerPool, config: ServerConfig, *, model: str, fetch: FetchConfig | None = None):
        self.pool = pool
        self.config = config
        self.model = model
        self.fetcher = None
        if config.fetch_image_urls:
            from gensearcher.web import Fetcher

            self.fetcher = Fetcher(fetch or FetchConfig())
        self.files: OrderedDict[str, bytes] = OrderedDict()
        self.status = Counter[str]()
        self.started = time.time()

    # -- inputs --------------------------------------------------------------------------------------

    async def decode_images(self, sources: list[bytes | str]) -> list[bytes]:
        """Validated input images as PNG bytes. Strings are data URLs (or http URLs when enabled)."""
        if len(sources) > self.config.max_images:
            raise InputError(f"too many images: {len(sources)} (at most {self.config.max_images})")
        out = []
        for index, source in enumerate(sources):
            data = await self._image_bytes(source, index) if isinstance(source, str) else source
            out.append(self._validate(data, index))
        return out

    async def _image_bytes(self, source: str, index: int) -> bytes:
        if source.startswith("data:"):
            header, _, payload = source.partition(",")
            if not header.endswith(";base64"):
                raise InputError(f"image {index}: only base64 data URLs are accepted")
            return self._b64(payload, index)
        if source.startswith(("http://", "https://")):
            if self.fetcher is None:
                raise InputError(f"image {index}: image URLs are disabled on this server; send a base64 data URL")
            from gensearcher.web import FetchError

            try:
                return (await self.fetcher.fetch(source, max_bytes=self.config.max_image_bytes)).body
            except FetchError as exc:
                raise InputError(f"image {index}: {exc}") from None
        return self._b64(source, index)  # bare base64

    def _b64(self, payload: str, index: int) -> bytes:
        if len(payload) > self.config.max_image_bytes * 4 // 3 + 8:
            raise InputError(f"image {index} is larger than {self.config.max_image_bytes} bytes")
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(f"image {index}: invalid base64") from None

    def _validate(self, data: bytes, index: int) -> bytes:
        from PIL import Image

        if len(data) > self.config.max_image_bytes:
            raise InputError(f"image {index} is larger than {self.config.max_image_bytes} bytes")
        if sniff_image_type(data) is None:
            raise InputError(f"image {index} is not a PNG, JPEG, WebP, GIF or BMP image")
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > self.config.max_image_pixels:
                    raise InputError(f"image {index} has too many pixels ({image.width}x{image.height})")
                rgb = image.convert("RGB")
        except InputError:
            raise
        except (OSError, ValueError, Image.DecompressionBombError):
            raise InputError(f"image {index} does not decode") from None
        buffer = io.BytesIO()
        rgb.save(buffer, format="PNG")
        return buffer.getvalue()

    def check_size(self, width: int | None, height: int | None) -> None:
        if (width is None) != (height is None):
            raise InputError("give both width and height, or neither")
        if width is not None and height is not None:
            if width % 16 or height % 16:
                raise InputError("width and height must be multiples of 16")
            if width * height > self.config.max_output_pixels:
                raise InputError(f"{width}x{height} is larger than {self.config.max_output_pixels} pixels")

    # -- running -------------------------------------------------------------------------------------

    async def run(self, prompt: str, images: list[bytes], params: dict[str, Any]) -> tuple[bytes, int, int, float]:
        capabilities = self.pool.capabilities
        if any(w.ready.is_set() for w in self.pool.workers):
            if images and not capabilities["edit"]:
                raise InputError("this server has no edit model: send the request without images")
            if not images and not capabilities["text"]:
                raise InputError("this server only edits: send at least one input image")
        try:
            data, width, height, seconds = await self.pool.submit(prompt, images, params, self.config.request_timeout_s)
        except QueueFull:
            raise InputError("the queue is full; retry later", 429,
                             {"retry-after": str(self.pool.retry_after_s())}) from None
        except TimeoutError:
            raise InputError(f"generation did not finish within {self.config.request_timeout_s:g} s", 504) from None
        except NoCapableWorker:
            raise InputError("no worker can serve this kind of request", 400) from None
        except WorkerFailure as exc:
            raise InputError(f"generation failed: {exc}", 500) from None
        return data, width, height, seconds

    def keep_file(self, data: bytes) -> str:
        file_id = secrets.token_urlsafe(12)
        self.files[file_id] = data
        while len(self.files) > 64:
            self.files.popitem(last=False)
        return file_id


def parse_size(size: str | None) -> tuple[int | None, int | None]:
    if size in (None, "", "auto"):
        return None, None
    try:
        width, height = (int(part) for part in str(size).lower().split("x"))
    except ValueError:
        raise InputError(f"size must be WIDTHxHEIGHT or auto, not {size!r}") from None
    return width, height


def create_app(server: ImageServer, *, token: str | None = None) -> Any:
    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse, Response

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        await server.pool.start(wait=False)
        yield
        await server.pool.stop()
        if server.fetcher is not None:
            await server.fetcher.aclose()

    app = FastAPI(title="gensearcher generator server", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.server = server

    def error_body(request: Any, message: str, status: int) -> dict[str, Any]:
        if request.url.path.startswith("/v1/"):
            kind = "invalid_request_error" if status < 500 else "server_error"
            return {"error": {"message": message, "type": kind, "param": None, "code": None}}
        return {"success": False, "message": message}

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> Any:
        server.status[str(exc.status)] += 1
        return JSONResponse(error_body(request, str(exc), exc.status), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"] if part != "body")
        server.status["400"] += 1
        return JSONResponse(error_body(request, f"{where}: {first['msg']}".strip(": "), 400), status_code=400)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Any:  # never a traceback to the client
        logger.exception("request failed")
        server.status["500"] += 1
        return JSONResponse(error_body(request, "internal error", 500), status_code=500)

    async def authorised(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise InputError("missing or wrong bearer token", 401)

    @app.get("/health")
    async def health() -> Any:
        ready = [w.index for w in server.pool.workers if w.ready.is_set()]
        status = "ok" if len(ready) == len(server.pool.workers) else "degraded" if ready else "loading"
        return {"status": status, "num_workers": len(server.pool.workers), "ready_workers": ready,
                "disabled_workers": [w.index for w in server.pool.workers if not w.ready.is_set()],
                "queue": server.pool.queue.qsize(), "model": server.model, **server.pool.capabilities}

    @app.get("/metrics")
    async def metrics() -> Any:
        return PlainTextResponse(_prometheus(server), media_type="text/plain; version=0.0.4")

    @app.post("/generate", dependencies=[Depends(authorised)])
    async def generate(body: ReferenceGenerateRequest, response: Response) -> Any:
        server.check_size(body.width, body.height)
        images = await server.decode_images(list(body.image_urls or []))
        # The reference body always carries guidance_scale=1.0; it only means something to the edit model.
        params = {"seed": body.seed, "steps": body.num_inference_steps, "true_cfg_scale": body.true_cfg_scale,
                  "guidance_scale": body.guidance_scale if images else None, "negative_prompt": body.negative_prompt,
                  "width": body.width, "height": body.height}
        data, _, _, seconds = await server.run(body.prompt, images, params)
        server.status["200"] += 1
        response.headers["x-pipeline-seconds"] = f"{seconds:.4f}"  # the worker's own time, for clients and benchmarks
        return {"success": True, "image": base64.b64encode(data).decode("ascii")}

    def check_model(name: str | None) -> None:
        if name and name not in (server.model, "default"):
            raise InputError(f"model {name!r} is not served here; this server serves {server.model!r}", 404)

    @app.post("/v1/images/generations", dependencies=[Depends(authorised)])
    async def generations(body: OpenAIGenerateRequest, request: Request) -> Any:
        check_model(body.model)
        width, height = parse_size(body.size)
        server.check_size(width, height)
        params = _openai_params(body.seed, width, height, with_images=False)
        data, _, _, _ = await server.run(body.prompt, [], params)
        return _openai_response(server, data, body.response_format, request)

    @app.post("/v1/images/edits", dependencies=[Depends(authorised)])
    async def edits(request: Request) -> Any:
        async with request.form(max_files=server.config.max_images + 1, max_fields=64) as form:
            check_model(str(form.get("model") or "") or None)
            prompt = str(form.get("prompt") or "")
            if not prompt:
                raise InputError("prompt is required")
            uploads = [part for key in ("image", "image[]") for part in form.getlist(key)]
            if not uploads:
                raise InputError("at least one image is required (form field 'image' or 'image[]')")
            raw = [await part.read() if hasattr(part, "read") else str(part) for part in uploads]
            size, response_format, seed = form.get("size"), form.get("response_format"), form.get("seed")
        images = await server.decode_images(raw)
        width, height = parse_size(str(size or "auto"))
        server.check_size(width, height)
        params = _openai_params(int(str(seed)) if seed else None, width, height, with_images=True)
        data, _, _, _ = await server.run(prompt, images, params)
        return _openai_response(server, data, str(response_format or "b64_json"), request)

    @app.get("/v1/files/{file_id}.png")
    async def file(file_id: str) -> Any:
        data = server.files.get(file_id)
        if data is None:
            raise InputError("no such file (they are kept for the 64 most recent images)", 404)
        return Response(data, media_type="image/png")

    return app


def _openai_params(seed: int | None, width: int | None, height: int | None, *, with_images: bool) -> dict[str, Any]:
    from gensearcher.generate.base import GenerationRequest

    return GenerationRequest(prompt="-", seed=seed or 0, width=width, height=height).resolved(with_references=with_images)


def _openai_response(server: ImageServer, data: bytes, response_format: str | None, request: Any) -> dict[str, Any]:
    server.status["200"] += 1
    if response_format == "url":
        file_id = server.keep_file(data)
        entry = {"url": str(request.base_url).rstrip("/") + f"/v1/files/{file_id}.png"}
    elif response_format in (None, "b64_json"):
        entry = {"b64_json": base64.b64encode(data).decode("ascii")}
    else:
        raise InputError("response_format must be b64_json or url")
    return {"created": int(time.time()), "data": [entry], "output_format": "png"}


def _prometheus(server: ImageServer) -> str:
    pool = server.pool
    lines = [
        "# HELP gensearcher_queue_depth Requests waiting for a worker.", "# TYPE gensearcher_queue_depth gauge",
        f"gensearcher_queue_depth {pool.queue.qsize()}",
        "# HELP gensearcher_requests_total Answered requests by HTTP status.", "# TYPE gensearcher_requests_total counter",
        *(f'gensearcher_requests_total{{status="{status}"}} {count}' for status, count in sorted(server.status.items())),
        "# HELP gensearcher_generation_seconds Time from queueing to result.", "# TYPE gensearcher_generation_seconds summary",
        f"gensearcher_generation_seconds_sum {pool.latency_sum:.6f}", f"gensearcher_generation_seconds_count {pool.completed}",
        "# HELP gensearcher_worker_up Whether a worker is ready.", "# TYPE gensearcher_worker_up gauge",
        "# HELP gensearcher_worker_failures_total Failed jobs per worker.", "# TYPE gensearcher_worker_failures_total counter",
        "# HELP gensearcher_worker_restarts_total Reloads per worker.", "# TYPE gensearcher_worker_restarts_total counter",
    ]
    for w in pool.workers:
        labels = f'worker="{w.index}",device="{w.device}"'
        lines += [f"gensearcher_worker_up{{{labels}}} {int(w.ready.is_set())}",
                  f"gensearcher_worker_failures_total{{{labels}}} {w.total_failures}",
                  f"gensearcher_worker_restarts_total{{{labels}}} {w.restarts}",
                  f"gensearcher_worker_served_total{{{labels}}} {w.served}"]
    return "\n".join(lines) + "\n"
