"""The generator server: FastAPI in front of a pool of pipeline workers.

    POST /generate               the reference system's request and response, so its clients work as is
    POST /v1/images/generations  OpenAI-compatible (JSON)
    POST /v1/images/edits        OpenAI-compatible (multipart: `image` or `image[]` parts)
    GET  /v1/files/{id}.png      images answered with response_format=url
    GET  /v1/models              the served model, under its served name (as vLLM answers)
    GET  /health, GET /metrics   status; Prometheus text (the only paths open without the token)

Safe by default: binds 127.0.0.1 (see `gensearcher serve`); the optional bearer token and the body cap are
checked by `RequestGuard` before any body is read; limits on prompt length, image count, bytes and pixels;
client mistakes are 400s that never count against a worker; image decoding runs in threads; image URLs
only through the hardened fetcher and only when enabled; errors as JSON without tracebacks or paths.
"""

import asyncio
import base64
import binascii
import io
import logging
import secrets
import time
from collections import Counter, OrderedDict
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from gensearcher.config import FetchConfig, ServerConfig
from gensearcher.errors import UserError
from gensearcher.generate.base import EDIT_GUIDANCE, EDIT_STEPS, NEGATIVE_PROMPT, TRUE_CFG_SCALE
from gensearcher.images import sniff_image_type
from gensearcher.server.guard import RequestGuard, error_body
from gensearcher.server.workers import NoCapableWorker, QueueFull, WorkerFailure, WorkerPool

logger = logging.getLogger(__name__)

# What torch.Generator.manual_seed accepts; anything else would fail inside the worker, as a worker failure.
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1
# Decodes at once: each can hold a 40 MP image three times over (decoded, converted, re-encoded).
DECODE_SLOTS = 2
READ_CHUNK = 1 << 20
_Body = TypeVar("_Body", bound=BaseModel)


class InputError(UserError):
    """A bad request (status 400 unless given)."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers


class ReferenceGenerateRequest(BaseModel):
    """The reference system's /generate body (plus optional width and height)."""

    image_urls: list[str] | None = Field(None, description="Input images: base64 data URLs (or URLs, when enabled).")
    prompt: str = Field(..., min_length=1, description="What to draw; at most server.max_prompt_chars.")
    seed: int = Field(0, ge=SEED_MIN, le=SEED_MAX, description="torch.Generator seed.")
    true_cfg_scale: float = Field(TRUE_CFG_SCALE, ge=0, le=100, allow_inf_nan=False)
    negative_prompt: str = Field(NEGATIVE_PROMPT, description="At most server.max_prompt_chars.")
    num_inference_steps: int = Field(EDIT_STEPS, ge=1, le=500)
    guidance_scale: float = Field(EDIT_GUIDANCE, ge=0, le=100, allow_inf_nan=False)
    num_images_per_prompt: int = Field(1, ge=1, le=1)
    width: int | None = Field(None, ge=16, le=8192)
    height: int | None = Field(None, ge=16, le=8192)


class OpenAIGenerateRequest(BaseModel):
    """The OpenAI Images generations body; fields we do not use (quality, background ...) are accepted."""

    prompt: str = Field(..., min_length=1, description="At most server.max_prompt_chars.")
    model: str | None = Field(None, description="The served model's name; omitted means the served one.")
    n: int = Field(1, ge=1, le=1)
    size: str | None = Field("auto", description="WIDTHxHEIGHT (multiples of 16) or auto.")
    response_format: str | None = Field("b64_json", description="b64_json or url.")
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX)
    model_config = {"extra": "allow"}


def served_name(model: str) -> str:
    """The name clients see: the last part of a folder or a hub id, never the whole path."""
    return model.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or "model"


class ImageServer:
    """The state behind the app: the pool, the limits, the fetcher, recent images for url responses."""

    def __init__(self, pool: WorkerPool, config: ServerConfig, *, model: str, fetch: FetchConfig | None = None):
        self.pool = pool
        self.config = config
        self.name = config.served_model_name or served_name(model)
        self.fetcher = None
        if config.fetch_image_urls:
            from gensearcher.web import Fetcher

            self.fetcher = Fetcher(fetch or FetchConfig())
        self.files: OrderedDict[str, bytes] = OrderedDict()
        self.status = Counter[str]()
        self.started = time.time()
        self._decoding = asyncio.Semaphore(DECODE_SLOTS)

    # -- inputs --------------------------------------------------------------------------------------

    async def decode_images(self, sources: list[bytes | str]) -> list[bytes]:
        """Validated input images as PNG bytes. Strings are data URLs (or http URLs when enabled).

        Base64 and image decoding run in threads (a 40 MP image takes seconds), so /health and other
        requests are answered meanwhile."""
        if len(sources) > self.config.max_images:
            raise InputError(f"too many images: {len(sources)} (at most {self.config.max_images})")
        out = []
        for index, source in enumerate(sources):
            fetched = await self._fetch(source, index) if isinstance(source, str) else source
            async with self._decoding:
                out.append(await asyncio.to_thread(self._decode, fetched, index))
        return out

    async def _fetch(self, source: str, index: int) -> bytes | str:
        if not source.startswith(("http://", "https://")):
            return source
        if self.fetcher is None:
            raise InputError(f"image {index}: image URLs are disabled on this server; send a base64 data URL")
        from gensearcher.web import FetchError

        try:
            return (await self.fetcher.fetch(source, max_bytes=self.config.max_image_bytes)).body
        except FetchError as exc:
            raise InputError(f"image {index}: {exc}") from None

    def _decode(self, source: bytes | str, index: int) -> bytes:
        if isinstance(source, str):
            header, comma, payload = source.partition(",")
            if comma and header.startswith("data:"):
                if not header.endswith(";base64"):
                    raise InputError(f"image {index}: only base64 data URLs are accepted")
            else:
                payload = source  # bare base64
            source = self._b64(payload, index)
        return self._validate(source, index)

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
        rgb.save(buffer, format="PNG", compress_level=1)  # it only crosses a pipe: speed over size
        return buffer.getvalue()

    async def read_upload(self, part: Any, index: int) -> bytes:
        """An uploaded file, read in chunks and refused as soon as it passes max_image_bytes."""
        cap = self.config.max_image_bytes
        if getattr(part, "size", None) is not None and part.size > cap:
            raise InputError(f"image {index} is larger than {cap} bytes")
        chunks, total = [], 0
        while chunk := await part.read(READ_CHUNK):
            total += len(chunk)
            if total > cap:
                raise InputError(f"image {index} is larger than {cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def check_text(self, prompt: str, negative_prompt: str = "") -> None:
        limit = self.config.max_prompt_chars
        if not prompt:
            raise InputError("prompt is required")
        for name, text in (("prompt", prompt), ("negative_prompt", negative_prompt)):
            if len(text) > limit:
                raise InputError(f"{name} has {len(text)} characters (at most {limit})")

    def check_size(self, width: int | None, height: int | None) -> None:
        if (width is None) != (height is None):
            raise InputError("give both width and height, or neither")
        if width is not None and height is not None:
            if not (16 <= width <= 8192 and 16 <= height <= 8192):
                raise InputError("width and height must be between 16 and 8192")
            if width % 16 or height % 16:
                raise InputError("width and height must be multiples of 16")
            if width * height > self.config.max_output_pixels:
                raise InputError(f"{width}x{height} is larger than {self.config.max_output_pixels} pixels")

    def check_model(self, name: str | None) -> None:
        if name and name != self.name:
            raise InputError(f"model {name[:100]!r} is not served here; this server serves {self.name!r}", 404)

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

    def file_url(self, scope: Any, file_id: str) -> str:
        """A link built from the configured public URL or the socket's own address, never the Host header
        (which the client chooses, and could point at any site)."""
        base = self.config.public_url
        if base is None:
            host, port = scope.get("server") or (self.config.host, self.config.port)
            base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        return f"{base.rstrip('/')}/v1/files/{file_id}.png"


def parse_size(size: str | None) -> tuple[int | None, int | None]:
    if size in (None, "", "auto"):
        return None, None
    try:
        width, height = (int(part) for part in str(size).lower().split("x"))
    except ValueError:
        raise InputError(f"size must be WIDTHxHEIGHT or auto, not {str(size)[:40]!r}") from None
    return width, height


def parse_seed(text: str) -> int | None:
    if not text:
        return None
    try:
        seed = int(text)
    except ValueError:
        raise InputError(f"seed must be an integer, not {text[:40]!r}") from None
    if not SEED_MIN <= seed <= SEED_MAX:
        raise InputError(f"seed must be between {SEED_MIN} and {SEED_MAX}")
    return seed


async def parse_body(request: Any, model: type[_Body]) -> _Body:
    """The JSON body as `model`, validated in a thread (a body may be tens of megabytes)."""
    raw = await request.body()  # bounded: RequestGuard cuts it off at max_body_bytes
    try:
        return await asyncio.to_thread(model.model_validate_json, raw)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"])
        raise InputError(f"{where}: {first['msg']}".strip(": ")) from None


def create_app(server: ImageServer, *, token: str | None = None) -> Any:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse, Response
    from starlette.exceptions import HTTPException

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        await server.pool.start(wait=False)
        yield
        await server.pool.stop()
        if server.fetcher is not None:
            await server.fetcher.aclose()

    # No docs pages; the schema stays at /openapi.json behind the token like everything but the probes.
    app = FastAPI(title="gensearcher generator server", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.server = server
    app.add_middleware(RequestGuard, token=token, max_body_bytes=server.config.max_body_bytes,
                       count=lambda status: server.status.update([str(status)]))

    def answer_error(request: Request, message: str, status: int, headers: dict[str, str] | None = None) -> Any:
        server.status[str(status)] += 1
        return JSONResponse(error_body(request.url.path, message, status), status_code=status, headers=headers)

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> Any:
        return answer_error(request, str(exc), exc.status, exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Any:  # 404/405 routes, malformed multipart
        return answer_error(request, str(exc.detail), exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"] if part != "body")
        return answer_error(request, f"{where}: {first['msg']}".strip(": "), 400)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Any:  # never a traceback to the client
        logger.exception("request failed")
        return answer_error(request, "internal error", 500)

    @app.get("/health")
    async def health() -> Any:
        ready = [w.index for w in server.pool.workers if w.ready.is_set()]
        status = "ok" if len(ready) == len(server.pool.workers) else "degraded" if ready else "loading"
        return {"status": status, "num_workers": len(server.pool.workers), "ready_workers": ready,
                "disabled_workers": [w.index for w in server.pool.workers if not w.ready.is_set()],
                "queue": server.pool.queue.qsize(), "model": server.name, **server.pool.capabilities}

    @app.get("/metrics")
    async def metrics() -> Any:
        return PlainTextResponse(_prometheus(server), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models() -> Any:
        return {"object": "list", "data": [{"id": server.name, "object": "model", "created": int(server.started),
                                            "owned_by": "gensearcher", "root": server.name, "parent": None}]}

    @app.post("/generate")
    async def generate(request: Request, response: Response) -> Any:
        body = await parse_body(request, ReferenceGenerateRequest)
        server.check_text(body.prompt, body.negative_prompt)
        server.check_size(body.width, body.height)
        images = await server.decode_images(list(body.image_urls or []))
        # Only what the client set overrides the served model's preset (None = the preset's value), so a
        # served FLUX or Z-Image never gets Qwen's true CFG from a default. The reference client always
        # sends guidance_scale=1.0; it only means something to the edit model.
        given = body.model_fields_set

        def chosen(name: str) -> Any:
            return getattr(body, name) if name in given else None

        params = {"seed": body.seed, "steps": chosen("num_inference_steps"), "true_cfg_scale": chosen("true_cfg_scale"),
                  "guidance_scale": chosen("guidance_scale") if images else None,
                  "negative_prompt": chosen("negative_prompt"), "width": body.width, "height": body.height}
        data, _, _, seconds = await server.run(body.prompt, images, params)
        server.status["200"] += 1
        response.headers["x-pipeline-seconds"] = f"{seconds:.4f}"  # the worker's own time, for clients and benchmarks
        return {"success": True, "image": await asyncio.to_thread(_b64, data)}

    @app.post("/v1/images/generations")
    async def generations(request: Request) -> Any:
        body = await parse_body(request, OpenAIGenerateRequest)
        server.check_model(body.model)
        server.check_text(body.prompt)
        width, height = parse_size(body.size)
        server.check_size(width, height)
        params = _openai_params(body.seed, width, height)
        data, _, _, _ = await server.run(body.prompt, [], params)
        return await _openai_response(server, data, body.response_format, request)

    @app.post("/v1/images/edits")
    async def edits(request: Request) -> Any:
        async with request.form(max_files=server.config.max_images + 1, max_fields=64) as form:
            server.check_model(_text(form, "model") or None)
            prompt = _text(form, "prompt")
            server.check_text(prompt)
            uploads = [part for key in ("image", "image[]") for part in form.getlist(key)]
            if not uploads:
                raise InputError("at least one image is required (form field 'image' or 'image[]')")
            if len(uploads) > server.config.max_images:
                raise InputError(f"too many images: {len(uploads)} (at most {server.config.max_images})")
            raw = [part if isinstance(part, str) else await server.read_upload(part, i) for i, part in enumerate(uploads)]
            size, response_format, seed = _text(form, "size"), _text(form, "response_format"), _text(form, "seed")
        width, height = parse_size(size or "auto")
        server.check_size(width, height)
        params = _openai_params(parse_seed(seed), width, height)
        images = await server.decode_images(raw)
        data, _, _, _ = await server.run(prompt, images, params)
        return await _openai_response(server, data, response_format or "b64_json", request)

    @app.get("/v1/files/{file_id}.png")
    async def file(file_id: str) -> Any:
        data = server.files.get(file_id)
        if data is None:
            raise InputError("no such file (they are kept for the 64 most recent images)", 404)
        return Response(data, media_type="image/png")

    return app


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{name} must be a text field, not a file")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _openai_params(seed: int | None, width: int | None, height: int | None) -> dict[str, Any]:
    """The OpenAI routes set seed and size only: the rest is the served model's preset (None)."""
    return {"seed": seed or 0, "steps": None, "true_cfg_scale": None, "guidance_scale": None, "negative_prompt": None,
            "width": width, "height": height}


async def _openai_response(server: ImageServer, data: bytes, response_format: str | None, request: Any) -> dict[str, Any]:
    if response_format == "url":
        entry = {"url": server.file_url(request.scope, server.keep_file(data))}
    elif response_format in (None, "b64_json"):
        entry = {"b64_json": await asyncio.to_thread(_b64, data)}
    else:
        raise InputError("response_format must be b64_json or url")
    server.status["200"] += 1
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
