"""Generator server overhead and scaling, on the tiny QwenImage pipeline (CPU).

1. Overhead: p50 of a request through the server (HTTP, validation, queue, worker pipe, PNG) minus the p50
   of the same pipeline call made directly. Target (issue 4): under 10 ms.
2. 64 concurrent clients: every request answered, and each answer is the image of its own seed
   (compared with the direct pipeline's image for that seed): nothing lost, nothing mixed up.
3. Throughput with 2 worker processes against 1. Target: at least 1.7x.

    python benchmarks/generator_server.py
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

from gensearcher.generate.diffusers_backend import PipelineSet
from gensearcher.testing.tiny_models import save_tiny_qwen_image

SIZE, STEPS = 64, 4


def params(seed: int) -> dict[str, object]:
    return {"seed": seed, "steps": STEPS, "true_cfg_scale": 4.0, "guidance_scale": None, "negative_prompt": " ",
            "width": SIZE, "height": SIZE}


def body(seed: int) -> dict[str, object]:
    return {"prompt": "a tower", "seed": seed, "num_inference_steps": STEPS, "width": SIZE, "height": SIZE}


PIPELINE_SECONDS: list[float] = []


async def post(session: aiohttp.ClientSession, url: str, seed: int) -> tuple[int, bytes]:
    async with session.post(url + "/generate", json=body(seed)) as response:
        answer = await response.json()
        if "x-pipeline-seconds" in response.headers:
            PIPELINE_SECONDS.append(float(response.headers["x-pipeline-seconds"]))
        return response.status, base64.b64decode(answer["image"]) if answer.get("success") else b""


def pixels(png: bytes) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return image.tobytes()


class Served:
    """`gensearcher serve` in its own process, so the client's work does not share its interpreter."""

    def __init__(self, model: Path, workers: int, threads: int | None = None):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "GENSEARCHER_SERVER_MAX_QUEUE": "256"}
        if threads:
            env["GENSEARCHER_SERVER_THREADS_PER_WORKER"] = str(threads)
        self.process = subprocess.Popen([sys.executable, "-m", "gensearcher", "serve", "--model", str(model),
                                         "--workers", str(workers), "--port", str(port)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if json.loads(response.read())["status"] == "ok":
                        return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def start(model: Path, workers: int, threads: int | None = None) -> Served:
    return Served(model, workers, threads)


async def throughput(model: Path, workers: int, threads: int | None) -> float:
    """Seconds for 64 concurrent requests."""
    http = start(model, workers, threads)
    try:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(post(session, http.url, seed) for seed in range(2 * workers)))
            started = time.perf_counter()
            await asyncio.gather(*(post(session, http.url, seed) for seed in range(64)))
            return time.perf_counter() - started
    finally:
        http.stop()


async def measure(model: Path) -> dict[str, object]:
    import torch

    torch.set_num_threads(2)
    direct = PipelineSet(model=str(model), edit_model=None)
    expected = {seed: direct.run("a tower", [], params(seed)).tobytes() for seed in range(64)}

    http = start(model, workers=1)
    try:
        async with aiohttp.ClientSession() as session:
            for seed in range(5):
                await post(session, http.url, seed)
            # Alternate direct and served calls, so both see the same machine state.
            served, direct_times = [], []
            PIPELINE_SECONDS.clear()
            for seed in range(32):
                started = time.perf_counter()
                direct.run("a tower", [], params(seed))
                direct_times.append(time.perf_counter() - started)
                started = time.perf_counter()
                await post(session, http.url, seed)
                served.append(time.perf_counter() - started)
            in_worker = list(PIPELINE_SECONDS)
            answers = await asyncio.gather(*(post(session, http.url, seed) for seed in range(64)))
    finally:
        http.stop()
    statuses = [status for status, _ in answers]
    mixed = sum(1 for seed, (_, png) in enumerate(answers) if png and pixels(png) != expected[seed])
    scaling = {}
    for label, threads in (("threads_auto", None), ("threads_1", 1)):
        one, two = await throughput(model, 1, threads), await throughput(model, 2, threads)
        scaling[label] = {"one_worker_64_requests_s": round(one, 2), "two_workers_64_requests_s": round(two, 2),
                          "two_worker_speedup": round(one / two, 2)}

    pipeline_p50, served_p50 = statistics.median(direct_times), statistics.median(served)
    return {
        "benchmark": "generator_server",
        "pipeline": f"tiny QwenImage, {SIZE}x{SIZE}, {STEPS} steps, CPU",
        "pipeline_p50_ms": round(1000 * pipeline_p50, 1),
        "served_p50_ms": round(1000 * served_p50, 1),
        "pipeline_in_worker_p50_ms": round(1000 * statistics.median(in_worker), 1),
        "overhead_p50_ms": round(1000 * statistics.median(s - w for s, w in zip(served, in_worker, strict=True)), 1),
        "overhead_vs_direct_p50_ms": round(1000 * (served_p50 - pipeline_p50), 1),
        "concurrent_clients": 64,
        "answered_200": statuses.count(200),
        "mixed_up": mixed,
        "scaling": scaling,
        "note": "threads_auto: one worker uses both cores' torch threads; threads_1: one torch thread per worker",
        "targets": {"overhead_p50_ms": 10, "two_worker_speedup": 1.7},
    }


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        model = save_tiny_qwen_image(Path(tmp) / "tiny")
        print(json.dumps(asyncio.run(measure(model)), indent=2))
