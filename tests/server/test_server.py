"""The generator server under uvicorn, with tiny pipelines in worker processes: our http backend, the
official openai SDK and the reference system's request body all talk to it."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import time
import urllib.request

import pytest
from PIL import Image

from gensearcher.config import load_settings
from gensearcher.testing import ThreadedUvicorn
from tests.conftest import make_image

pytest.importorskip("diffusers")
TOKEN = "server-secret"
SMALL = {"edit_condition_pixels": 64 * 64, "edit_vae_pixels": 64 * 64}


def start_server(text_model, edit_model, **server):
    from gensearcher.server import build_app

    settings = load_settings({"generator": SMALL, "server": {"token": TOKEN, **server}})
    http = ThreadedUvicorn(build_app(settings, model=str(text_model), edit_model=str(edit_model))).start()
    wait_healthy(http.url)
    return http


def wait_healthy(url, status="ok", timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = get_json(url + "/health")
        if health["status"] == status:
            return health
        time.sleep(0.2)
    raise AssertionError(f"server not {status}: {health}")


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def post(url, body, token=TOKEN):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json",
                                              **({"authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def data_url(path):
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def server(tiny_text_model, tiny_edit_model):
    http = start_server(tiny_text_model, tiny_edit_model, max_queue=2, max_images=3, max_image_bytes=200_000)
    yield http
    http.stop()


def test_reference_body_with_two_images(server, tmp_path):
    refs = [make_image(tmp_path / f"r{i}.png", color=(200, 40 * i, 0)) for i in range(2)]
    body = {"image_urls": [data_url(p) for p in refs], "prompt": "the runner with the trophy", "seed": 0,
            "true_cfg_scale": 4.0, "negative_prompt": " ", "num_inference_steps": 2, "guidance_scale": 1.0,
            "num_images_per_prompt": 1, "width": 64, "height": 64}
    status, answer, _ = post(server.url + "/generate", body)
    assert status == 200 and answer["success"] is True
    image = Image.open(io.BytesIO(base64.b64decode(answer["image"])))
    assert image.size == (64, 64)
    # Text only (image_urls null, as the reference client sends it) goes to the text model.
    status, answer, _ = post(server.url + "/generate", {**body, "image_urls": None})
    assert status == 200 and answer["success"]


def test_openai_sdk_generations_and_edits(server, tmp_path):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=TOKEN, max_retries=0)
    generated = client.images.generate(prompt="a silver cup", size="64x64", response_format="b64_json")
    assert Image.open(io.BytesIO(base64.b64decode(generated.data[0].b64_json))).size == (64, 64)
    by_url = client.images.generate(prompt="a silver cup", size="48x32", response_format="url")
    assert by_url.data[0].url.startswith(server.url + "/v1/files/")
    fetch = urllib.request.Request(by_url.data[0].url, headers={"authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(fetch, timeout=10) as response:
        assert Image.open(io.BytesIO(response.read())).size == (48, 32)
    ref = make_image(tmp_path / "ref.png")
    edited = client.images.edit(image=[ref.read_bytes(), ref.read_bytes()], prompt="make it blue", size="64x64")
    assert Image.open(io.BytesIO(base64.b64decode(edited.data[0].b64_json))).size == (64, 64)
    single = client.images.edit(image=("ref.png", ref.read_bytes(), "image/png"), prompt="make it blue", size="32x32")
    assert single.data[0].b64_json
    with pytest.raises(openai.NotFoundError):
        client.images.generate(prompt="x", model="dall-e-9", size="64x64")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).images.generate(prompt="x")


@pytest.mark.parametrize("images, message", [
    (["data:image/png;base64,@@@notbase64"], "invalid base64"),
    (["data:image/png;base64," + base64.b64encode(b"<html>not an image</html>").decode()], "not a PNG"),
    (["data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"x" * 300_000).decode()], "larger than"),
    (["http://example.org/a.png"], "image URLs are disabled"),
])
def test_bad_images_are_clear_json_errors(server, images, message):
    status, answer, _ = post(server.url + "/generate", {"image_urls": images, "prompt": "x", "num_inference_steps": 1})
    assert status == 400 and answer["success"] is False and message in answer["message"]
    assert "Traceback" not in json.dumps(answer)


def test_too_many_images_bad_sizes_and_missing_token(server, tmp_path):
    ref = data_url(make_image(tmp_path / "r.png"))
    status, answer, _ = post(server.url + "/generate", {"image_urls": [ref] * 4, "prompt": "x"})
    assert status == 400 and "too many images" in answer["message"]
    status, answer, _ = post(server.url + "/generate", {"prompt": "x", "width": 50, "height": 64})
    assert status == 400 and "multiples of 16" in answer["message"]
    status, answer, _ = post(server.url + "/generate", {"prompt": ""})
    assert status == 400 and "prompt" in answer["message"]
    status, answer, _ = post(server.url + "/generate", {"prompt": "x"}, token=None)
    assert status == 401


def test_results_never_mix_and_a_full_queue_answers_429(server):
    async def one(seed):
        return await asyncio.to_thread(post, server.url + "/generate",
                                       {"prompt": "x", "seed": seed, "num_inference_steps": 3, "width": 32, "height": 32})

    async def burst():
        return await asyncio.gather(*(one(seed) for seed in range(8)))

    answers = asyncio.run(burst())
    statuses = sorted(status for status, _, _ in answers)
    assert 429 in statuses and 200 in statuses
    limited = next(a for a in answers if a[0] == 429)
    assert int(limited[2]["retry-after"]) >= 1
    # Each successful answer is the image of its own seed.
    by_seed = {seed: a[1]["image"] for seed, a in enumerate(answers) if a[0] == 200}
    for seed, image in by_seed.items():
        status, again, _ = post(server.url + "/generate", {"prompt": "x", "seed": seed, "num_inference_steps": 3,
                                                           "width": 32, "height": 32})
        assert status == 200 and again["image"] == image


def test_health_and_metrics(server):
    health = get_json(server.url + "/health")
    assert health["status"] == "ok" and health["text"] and health["edit"]
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    assert "gensearcher_queue_depth" in text and 'gensearcher_worker_up{worker="0",device="cpu"} 1' in text
    assert "gensearcher_generation_seconds_count" in text


def test_worker_failure_then_recovery(tiny_text_model, tiny_edit_model):
    http = start_server(tiny_text_model, tiny_edit_model, request_timeout_s=3)
    try:
        # A job that cannot finish in time: the server answers 504 and kills the wedged worker.
        status, answer, _ = post(http.url + "/generate", {"prompt": "x", "num_inference_steps": 500, "width": 1024,
                                                          "height": 1024})
        assert status == 504 and "did not finish" in answer["message"]
        wait_healthy(http.url, "ok")
        # A worker that crashes outright (as on an out-of-memory kill) is restarted too.
        pid = next(iter(w.process.pid for w in _pool(http).workers))
        os.kill(pid, 9)
        wait_healthy(http.url, "loading", timeout=10)
        wait_healthy(http.url, "ok")
        status, answer, _ = post(http.url + "/generate", {"prompt": "x", "num_inference_steps": 1, "width": 32, "height": 32})
        assert status == 200 and answer["success"]
        with urllib.request.urlopen(http.url + "/metrics", timeout=10) as response:
            assert 'gensearcher_worker_restarts_total{worker="0",device="cpu"} 2' in response.read().decode()
    finally:
        http.stop()


def _pool(http):
    return http._server.config.app.state.server.pool


async def test_our_http_backend_against_the_server(server, tmp_path):
    from gensearcher.config import GeneratorConfig
    from gensearcher.generate import GenerationRequest
    from gensearcher.generate.http_backend import HttpGenerator

    refs = [str(make_image(tmp_path / f"h{i}.png", color=(0, 90 * i, 200))) for i in range(2)]
    generator = HttpGenerator(GeneratorConfig(app_urls=[server.url], server_token=TOKEN, max_retries=0))
    try:
        result = await generator.generate(GenerationRequest(prompt="x", reference_images=refs, steps=2, width=64, height=64))
        # 256 px and up used to arrive cut off (the client read only what was buffered).
        large = await generator.generate(GenerationRequest(prompt="y", seed=7, steps=1, true_cfg_scale=1.0,
                                                           width=256, height=256))
    finally:
        await generator.aclose()
    assert (result.width, result.height) == (64, 64) and result.used_images == refs and result.backend == "http"
    status, direct, _ = await asyncio.to_thread(post, server.url + "/generate", {
        "prompt": "y", "seed": 7, "num_inference_steps": 1, "true_cfg_scale": 1.0, "width": 256, "height": 256})
    assert status == 200 and large.image_png == base64.b64decode(direct["image"]) and large.width == 256


def test_serve_command_binds_loopback_and_serves(tiny_text_model, tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen([sys.executable, "-m", "gensearcher", "serve", "--model", str(tiny_text_model),
                                "--port", str(port)], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if get_json(url + "/health")["status"] == "ok":
                    break
            except OSError:
                time.sleep(0.3)
        status, answer, headers = post(url + "/generate", {"prompt": "x", "num_inference_steps": 1, "width": 32,
                                                           "height": 32}, token=None)
        assert status == 200 and answer["success"] and float(headers["x-pipeline-seconds"]) > 0
        assert get_json(url + "/health")["text"] is True and get_json(url + "/health")["edit"] is False
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_links_and_names_come_from_settings_never_from_the_request():
    from gensearcher.config import ServerConfig
    from gensearcher.server.app import ImageServer, served_name
    from gensearcher.server.workers import WorkerPool

    pool = WorkerPool({}, ["cpu"])  # never started: only the naming is exercised
    public = ImageServer(pool, ServerConfig(public_url="https://gen.example.org/", served_model_name="qwen"),
                         model="/srv/models/Qwen-Image")
    assert public.name == "qwen"
    assert public.file_url({"server": ("10.0.0.5", 8000)}, "f1") == "https://gen.example.org/v1/files/f1.png"
    bound = ImageServer(pool, ServerConfig(), model="/srv/models/Qwen-Image/")
    assert bound.name == "Qwen-Image" and served_name("Qwen/Qwen-Image-Edit-2509") == "Qwen-Image-Edit-2509"
    assert bound.file_url({"server": ("::1", 8123)}, "f2") == "http://[::1]:8123/v1/files/f2.png"
