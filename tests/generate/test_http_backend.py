"""The http generator backend against servers speaking the reference system's /generate API."""


import asyncio
import base64
import hashlib
import io
import os
import threading

import pytest
from PIL import Image

from gensearcher.config import GeneratorConfig
from gensearcher.errors import GenerationError
from gensearcher.generate import GenerationRequest
from gensearcher.generate.http_backend import HttpGenerator
from gensearcher.testing import ThreadedUvicorn
from tests.conftest import make_image


class ReferenceStyleServer:
    """A stand-in for a reference-system generator server: answers /generate with a solid PNG."""

    def __init__(self, color, *, delay_s=0.0, fail_first=0, status=200, png=None):
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse

        self.bodies, self.in_flight, self.max_in_flight = [], 0, 0
        self.fail_first, self.lock = fail_first, threading.Lock()
        app = FastAPI()

        @app.get("/health")
        async def health():
            return {"status": "ok"}

        @app.post("/generate")
        async def generate(request: Request):
            body = await request.json()
            with self.lock:
                self.bodies.append(body)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                failing = self.fail_first > 0
                self.fail_first -= 1
            try:
                await asyncio.sleep(delay_s)
                if failing:
                    return JSONResponse({"success": False, "message": "GPU busy"}, status_code=503)
                if status != 200:
                    return JSONResponse({"success": False, "message": "bad request"}, status_code=status)
                if png is not None:
                    return {"success": True, "image": base64.b64encode(png).decode()}
                buffer = io.BytesIO()
                Image.new("RGB", (32, 32), color).save(buffer, format="PNG")
                return {"success": True, "image": base64.b64encode(buffer.getvalue()).decode()}
            finally:
                with self.lock:
                    self.in_flight -= 1

        self.http = ThreadedUvicorn(app)

    def __enter__(self):
        self.http.start()
        return self

    def __exit__(self, *exc):
        self.http.stop()


def color_of(result):
    with Image.open(io.BytesIO(result.image_png)) as image:
        return image.getpixel((0, 0))


async def test_sends_the_reference_body_and_drops_extra_references(tmp_path):
    refs = [str(make_image(tmp_path / f"r{i}.png")) for i in range(4)]
    jpeg = tmp_path / "j.jpg"
    Image.new("RGB", (40, 40), (1, 2, 3)).save(jpeg)
    with ReferenceStyleServer((9, 9, 9)) as server:
        generator = HttpGenerator(GeneratorConfig(app_urls=[server.http.url]), max_references=3)
        result = await generator.generate(GenerationRequest(prompt="p", reference_images=[str(jpeg), *refs]))
        text_only = await generator.generate(GenerationRequest(prompt="q"))
        await generator.aclose()
    body = server.bodies[0]
    assert set(body) == {"image_urls", "prompt", "seed", "true_cfg_scale", "negative_prompt", "num_inference_steps",
                         "guidance_scale", "num_images_per_prompt"}
    assert len(body["image_urls"]) == 3 and body["image_urls"][0].startswith("data:image/jpeg;base64,")
    assert body["image_urls"][1].startswith("data:image/png;base64,")
    assert (body["num_inference_steps"], body["true_cfg_scale"], body["guidance_scale"], body["negative_prompt"]) == (40, 4.0, 1.0, " ")
    assert [d.index for d in result.dropped_references] == [3, 4] and color_of(result) == (9, 9, 9)
    assert server.bodies[1]["image_urls"] is None and server.bodies[1]["num_inference_steps"] == 50
    assert text_only.width == 32


async def test_balances_by_least_outstanding_with_a_per_url_limit():
    with ReferenceStyleServer((1, 0, 0), delay_s=0.2) as a, ReferenceStyleServer((0, 1, 0), delay_s=0.2) as b:
        generator = HttpGenerator(GeneratorConfig(app_urls=f"{a.http.url},{b.http.url}", per_url_concurrency=2))
        results = await asyncio.gather(*(generator.generate(GenerationRequest(prompt=str(i))) for i in range(8)))
        await generator.aclose()
    assert len(a.bodies) == len(b.bodies) == 4
    assert a.max_in_flight == b.max_in_flight == 2
    assert {color_of(r) for r in results} == {(1, 0, 0), (0, 1, 0)}


async def test_a_dead_server_is_skipped_and_5xx_is_retried():
    with ReferenceStyleServer((5, 5, 5), fail_first=1) as live:
        generator = HttpGenerator(GeneratorConfig(app_urls=["http://127.0.0.1:9", live.http.url], max_retries=3))
        results = [await generator.generate(GenerationRequest(prompt=str(i))) for i in range(4)]
        await generator.aclose()
    assert all(color_of(r) == (5, 5, 5) for r in results)
    assert generator.servers[0].down_until > 0  # marked down after its connection error


async def test_client_errors_are_not_retried():
    with ReferenceStyleServer((0, 0, 0), status=400) as server:
        generator = HttpGenerator(GeneratorConfig(app_urls=[server.http.url], max_retries=3))
        try:
            with pytest.raises(GenerationError, match="HTTP 400: bad request"):
                await generator.generate(GenerationRequest(prompt="x"))
        finally:
            await generator.aclose()
    assert len(server.bodies) == 1


async def test_a_real_size_image_arrives_whole():
    # 1328x1328 of noise: a 5.3 MB PNG, 7 MB of base64, many reads on the client's side.
    png = io.BytesIO()
    Image.frombytes("RGB", (1328, 1328), os.urandom(1328 * 1328 * 3)).save(png, format="PNG")
    with ReferenceStyleServer((0, 0, 0), png=png.getvalue()) as server:
        generator = HttpGenerator(GeneratorConfig(app_urls=[server.http.url], max_retries=0))
        try:
            result = await generator.generate(GenerationRequest(prompt="x", width=1328, height=1328))
        finally:
            await generator.aclose()
    assert (result.width, result.height) == (1328, 1328)
    assert hashlib.sha256(result.image_png).hexdigest() == hashlib.sha256(png.getvalue()).hexdigest()
