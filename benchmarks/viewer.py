"""The viewer on a large run: time to first byte of the items page and of an item page, and the server's memory.

Builds synthetic eval folders (gensearcher.viewer.sample_runs: the real record writers; every item points
at the same few 1328 px images, so 50,000 items stay small on disk) of each size, starts
`gensearcher view` on it in its own process, and measures over plain HTTP on 127.0.0.1. Targets: under
200 ms each and under 300 MB of server memory, flat in the number of items.

    python benchmarks/viewer.py [--sizes 1000,50000] [--requests 30]      (JSON on stdout)
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ttfb(port: int, path: str) -> float:
    """Seconds from sending the request to the status line and headers arriving."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    start = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    first = time.perf_counter() - start
    body = response.read()
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"{path}: HTTP {response.status}: {body[:200]!r}")
    return first


def measure(size: int, requests: int, folder: Path) -> dict[str, object]:
    import psutil

    from gensearcher.viewer.sample_runs import write_sample_run

    run = folder / f"run-{size}"
    started = time.perf_counter()
    write_sample_run(run, size, gt_dir=folder / "gt", distinct_images=False)
    built = time.perf_counter() - started
    port = free_port()
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "gensearcher", "view", str(run), "--data-root", str(folder),
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while True:
            try:
                ttfb(port, "/api/runs")
                break
            except (ConnectionError, OSError):
                if server.poll() is not None or time.perf_counter() - started > 600:
                    raise RuntimeError(server.stderr.read().decode() if server.stderr else "server died") from None
                time.sleep(0.1)
        ready = time.perf_counter() - started
        rng = random.Random(0)
        pages = max(1, size // 50)
        items_paths = [f"/runs/0/items?page={rng.randrange(1, pages + 1)}" for _ in range(requests // 2)]
        items_paths += [f"/runs/0/items?category=film&sort=-score&page={rng.randrange(1, max(2, pages // 5))}"
                        for _ in range(requests // 4)]
        items_paths += [f"/runs/0/items?q=number+{rng.randrange(size)}" for _ in range(requests - len(items_paths))]
        item_paths = [f"/runs/0/items/{rng.randrange(size)}" for _ in range(requests)]
        for path in items_paths[:3] + item_paths[:3]:  # warm up (first template compilation)
            ttfb(port, path)
        items_times = [ttfb(port, path) for path in items_paths]
        item_times = [ttfb(port, path) for path in item_paths]
        rss = psutil.Process(server.pid).memory_info().rss
    finally:
        server.terminate()
        server.wait(timeout=10)

    def summary(times: list[float]) -> dict[str, float]:
        ordered = sorted(times)
        return {"median_ms": round(1000 * statistics.median(ordered), 1),
                "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 1),
                "max_ms": round(1000 * ordered[-1], 1)}

    return {"items": size, "write_run_s": round(built, 1), "server_ready_s": round(ready, 1),
            "items_page_ttfb": summary(items_times), "item_page_ttfb": summary(item_times),
            "server_rss_mb": round(rss / 2**20, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,50000")
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="viewer-bench-") as tmp:
        results = [measure(int(size), args.requests, Path(tmp)) for size in args.sizes.split(",")]
    worst = {"items_page_p95_ms": max(r["items_page_ttfb"]["p95_ms"] for r in results),  # type: ignore[index]
             "item_page_p95_ms": max(r["item_page_ttfb"]["p95_ms"] for r in results),  # type: ignore[index]
             "server_rss_mb": max(r["server_rss_mb"] for r in results)}
    report = {"benchmark": "viewer", "runs": results, "worst": worst,
              "targets": {"ttfb_ms": 200, "server_rss_mb": 300},
              "met": worst["items_page_p95_ms"] < 200 and worst["item_page_p95_ms"] < 200 and worst["server_rss_mb"] < 300}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
