"""Attacks on the generator server, each reproduced on loopback against a real `gensearcher serve` process
(tiny pipelines in its worker processes): the refusal, and that the server stays healthy and small."""

from __future__ import annotations

import base64
import io
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("diffusers")
TOKEN = "attack-test-token"
MAX_BODY = 8_000_000
MAX_IMAGE = 1_000_000
MB = 1 << 20


class Served:
    def __init__(self, process: subprocess.Popen[bytes], port: int, model: Path):
        self.process, self.port, self.model = process, port, model
        self.url = f"http://127.0.0.1:{port}"

    def memory_kb(self, field: str = "VmHWM") -> int:
        """The server process's peak (VmHWM) or current (VmRSS) resident memory."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tiny_text_model, tiny_edit_model, tmp_path_factory):
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path_factory.mktemp("home")),
           "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "GENSEARCHER_SERVER_TOKEN": TOKEN,
           "GENSEARCHER_SERVER_MAX_BODY_BYTES": str(MAX_BODY), "GENSEARCHER_SERVER_MAX_IMAGE_BYTES": str(MAX_IMAGE),
           "GENSEARCHER_GENERATOR_EDIT_CONDITION_PIXELS": "4096", "GENSEARCHER_GENERATOR_EDIT_VAE_PIXELS": "4096"}
    process = subprocess.Popen([sys.executable, "-m", "gensearcher", "serve", "--model", str(tiny_text_model),
                                "--edit-model", str(tiny_edit_model), "--port", str(port)],
                               env=env, cwd=tmp_path_factory.mktemp("cwd"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    server = Served(process, port, tiny_text_model)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if call(server, "GET", "/health")[1]["status"] == "ok":
                    break
            except OSError:
                pass
            assert process.poll() is None, "the server exited"
            time.sleep(0.3)
        else:
            raise AssertionError("the server did not become healthy")
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


def call(server, method, path, body=None, *, token=TOKEN, headers=None, raw=None):
    data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.url + path, data=data, method=method, headers={
        "content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {}),
        **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, _decode(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, _decode(error.read()), dict(error.headers)


def _decode(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def stream_body(server, path, total, *, token=None, chunked=False, multipart=False):
    """Send up to `total` bytes of body in 1 MiB pieces, stopping as soon as the server answers.

    Returns (status, bytes sent). A server that reads the whole body first gets all of it."""
    content_type = "multipart/form-data; boundary=b" if multipart else "application/json"
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", f"Content-Type: {content_type}"]
    head += ["Transfer-Encoding: chunked"] if chunked else [f"Content-Length: {total}"]
    head += [f"Authorization: Bearer {token}"] if token else []
    sent, piece = 0, b"7" * MB
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        if multipart:  # one endless file part
            opening = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
            sock.sendall(b"%x\r\n%s\r\n" % (len(opening), opening) if chunked else opening)
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break  # the answer is there: stop sending
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1]), sent


def metrics(server):
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        return response.read().decode()


def assert_healthy(server):
    started = time.monotonic()
    status, health, _ = call(server, "GET", "/health", token=None)
    assert status == 200 and health["status"] == "ok" and time.monotonic() - started < 2.0


def test_an_oversized_upload_is_refused_without_being_read_whole(served):
    # First in this module, so the server's peak memory is still its start-up peak.
    assert _edit(served, _png((32, 32)), seed="warm-up")[0] == 400  # the form parser's own first use
    before = served.memory_kb()
    status, answer, _ = _edit(served, b"\x89PNG\r\n\x1a\n" + os.urandom(MAX_BODY - 200_000))
    assert status == 400 and f"larger than {MAX_IMAGE} bytes" in answer["error"]["message"]
    # The 7.8 MB upload was refused from its spooled size, not read into memory (it was, whole).
    assert served.memory_kb() - before < 3 * 1024
    status, answer, _ = _edit(served, _png((32, 32)), copies=5)
    assert status == 400 and "too many" in answer["error"]["message"].lower()
    assert_healthy(served)


def test_a_200mb_body_is_refused_before_it_is_read(served):
    before = served.memory_kb()
    # Without the token: 401 from the headers alone, declared length or chunked.
    assert stream_body(served, "/generate", 200 * MB)[0] == 401
    status, sent = stream_body(served, "/v1/images/generations", 200 * MB, chunked=True)
    assert status == 401 and sent < 32 * MB
    # With the token: a declared length over the cap is refused at once, a chunked body at the cap.
    status, sent = stream_body(served, "/generate", 200 * MB, token=TOKEN)
    assert status == 413 and sent < 32 * MB
    status, sent = stream_body(served, "/generate", 200 * MB, token=TOKEN, chunked=True)
    assert status == 413 and MAX_BODY <= sent < MAX_BODY + 32 * MB
    status, sent = stream_body(served, "/v1/images/edits", 200 * MB, token=TOKEN, chunked=True, multipart=True)
    assert status == 413 and MAX_BODY <= sent < MAX_BODY + 32 * MB
    # The server's peak memory hardly moved (it was +570 MB when the body was parsed before the token).
    assert served.memory_kb() - before < 48 * 1024
    assert_healthy(served)
    assert 'gensearcher_requests_total{status="413"} 3' in metrics(served)


def test_a_long_prompt_is_refused_and_never_reaches_a_worker(served):
    served_before = _worker_metric(served, "served")
    for path, body in (("/generate", {"prompt": "p" * 2_000_000}),
                       ("/generate", {"prompt": "p", "negative_prompt": "n" * 100_000}),
                       ("/v1/images/generations", {"prompt": "p" * 2_000_000, "size": "32x32"})):
        status, answer, _ = call(served, "POST", path, body)
        assert status == 400 and "characters (at most 16000)" in json.dumps(answer), answer
    assert _worker_metric(served, "served") == served_before
    assert_healthy(served)


def test_client_mistakes_are_400s_and_never_reload_the_pipeline(served, tmp_path):
    bad = [("/generate", {"prompt": "x", "seed": 2**64}), ("/generate", {"prompt": "x", "seed": -(2**63) - 1}),
           ("/generate", {"prompt": "x", "seed": 10**30}), ("/generate", {"prompt": "x", "width": 0, "height": 0}),
           ("/v1/images/generations", {"prompt": "x", "size": "0x0"}),
           ("/v1/images/generations", {"prompt": "x", "size": "-16x-16"}),
           ("/v1/images/generations", {"prompt": "x", "seed": 2**70, "size": "32x32"})]
    for path, body in bad:
        status, answer, _ = call(served, "POST", path, body)
        assert status == 400, (body, answer)
    status, answer, _ = call(served, "POST", "/generate", raw=b'{"prompt": "x", "true_cfg_scale": Infinity}')
    assert status == 400, answer
    png = _png((32, 32))
    for seed in ("abc", "1e5", str(2**64)):
        status, answer, _ = _edit(served, png, seed=seed)
        assert status == 400 and "seed" in answer["error"]["message"], answer
    metrics_text = metrics(served)
    assert 'gensearcher_worker_failures_total{worker="0",device="cpu"} 0' in metrics_text
    assert 'gensearcher_worker_restarts_total{worker="0",device="cpu"} 0' in metrics_text
    # The pipeline is still the one loaded at start, and it serves a seed at the edge of the range.
    status, answer, _ = call(served, "POST", "/generate", {"prompt": "x", "seed": 2**64 - 1, "num_inference_steps": 1,
                                                           "width": 32, "height": 32})
    assert status == 200 and answer["success"]


def test_health_answers_while_a_big_image_decodes(served):
    big = "data:image/png;base64," + base64.b64encode(_png((6000, 6000))).decode()  # 36 MP, 120 KB on the wire
    junk = "data:image/png;base64," + base64.b64encode(b"not an image").decode()
    latencies, done = [], threading.Event()

    def poll():
        while not done.is_set():
            started = time.monotonic()
            call(served, "GET", "/health", token=None)
            latencies.append(time.monotonic() - started)
            time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        started = time.monotonic()
        # The first image decodes (seconds of work), the second then fails: nothing reaches a worker.
        status, answer, _ = call(served, "POST", "/generate", {"prompt": "x", "image_urls": [big, junk]})
        took = time.monotonic() - started
    finally:
        done.set()
        poller.join()
    assert status == 400 and "image 1 is not a PNG" in answer["message"]
    assert took > 0.5 and max(latencies) < min(0.5, took / 2), (took, max(latencies))


def test_paths_never_reach_clients_and_the_served_name_works_like_vllm(served):
    status, health, _ = call(served, "GET", "/health", token=None)
    assert health["model"] == served.model.name and str(served.model.parent) not in json.dumps(health)
    status, models, _ = call(served, "GET", "/v1/models")
    assert status == 200 and [m["id"] for m in models["data"]] == [served.model.name]
    status, answer, _ = call(served, "POST", "/v1/images/generations", {"prompt": "x", "model": "gpt-image-1"})
    assert status == 404 and repr(served.model.name) in answer["error"]["message"]
    assert str(served.model.parent) not in json.dumps(answer)
    for model in (served.model.name, None):
        body = {"prompt": "x", "size": "32x32", **({"model": model} if model else {})}
        status, answer, _ = call(served, "POST", "/v1/images/generations", body)
        assert status == 200 and answer["data"][0]["b64_json"]


def test_url_answers_ignore_the_host_header_and_files_need_the_token(served):
    status, answer, _ = call(served, "POST", "/v1/images/generations",
                             {"prompt": "x", "size": "32x32", "response_format": "url"},
                             headers={"host": "attacker.example:80"})
    assert status == 200
    url = answer["data"][0]["url"]
    assert url.startswith(f"http://127.0.0.1:{served.port}/v1/files/") and "attacker" not in url
    path = url.removeprefix(served.url)
    assert call(served, "GET", path, token=None)[0] == 401
    assert call(served, "GET", path, token="wrong")[0] == 401
    status, image, _ = call(served, "GET", path)
    assert status == 200 and Image.open(io.BytesIO(image)).size == (32, 32)
    assert call(served, "GET", "/openapi.json", token=None)[0] == 401
    assert call(served, "GET", "/openapi.json")[0] == 200
    assert call(served, "GET", "/docs")[0] == 404
    assert call(served, "GET", "/v1/models", token=None)[0] == 401


def _worker_metric(server, name):
    prefix = f'gensearcher_worker_{name}_total{{worker="0",device="cpu"}} '
    return next(int(line.removeprefix(prefix)) for line in metrics(server).splitlines() if line.startswith(prefix))


def _png(size):
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 60, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def _edit(server, image, *, seed=None, copies=1):
    boundary = "gensearcherboundary"
    parts = [(b'Content-Disposition: form-data; name="prompt"\r\n\r\nmake it blue')]
    parts += [b'Content-Disposition: form-data; name="size"\r\n\r\n32x32']
    parts += [b'Content-Disposition: form-data; name="seed"\r\n\r\n' + seed.encode()] if seed is not None else []
    parts += [b'Content-Disposition: form-data; name="image[]"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
              + image] * copies
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    body += b"--" + boundary.encode() + b"--\r\n"
    return call(server, "POST", "/v1/images/edits", raw=body,
                headers={"content-type": f"multipart/form-data; boundary={boundary}"})
