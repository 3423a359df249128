"""browse against a hostile page: 16 MB of nothing but links (issue 11: 61 s of CPU and 1.7 GB in a thread
no timeout could stop; six of them made a tiny page wait 65 s).

Serves the page on loopback and browses it through the real tool with its default extraction pool
(scripts and styles dropped, HTML cut at 1 MB, 20 s deadline, worker killed past it). Prints JSON: the CPU seconds and peak RSS of the
worker that read the page, the browse's wall time, and how long a tiny page took while six hostile pages
were being read. `--baseline` also times the old path (the whole page through trafilatura in-process):
about a minute.

    python benchmarks/browse_hostile_page.py [--mb 16] [--baseline]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path

from gensearcher.config import FetchConfig
from gensearcher.errors import ToolError
from gensearcher.testing.documents import link_flood_page as hostile_page
from gensearcher.testing.threaded_server import ThreadedUvicorn
from gensearcher.tools import BrowseArgs
from gensearcher.tools.browse import BrowseTool
from gensearcher.web import Fetcher, Web
from gensearcher.web.extract_pool import ExtractionPool

TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux


def _app(page: bytes):  # type: ignore[no-untyped-def]
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    app = FastAPI()

    @app.get("/hostile.html")
    async def hostile() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/tiny.html")
    async def tiny() -> HTMLResponse:
        return HTMLResponse("<html><body><p>A tiny page.</p></body></html>")

    return app


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


async def _sample(pid: int, samples: list[tuple[float, float]]) -> None:
    while True:
        try:
            samples.append((_cpu_s(pid), _peak_rss_mb(pid)))
        except (OSError, IndexError):
            return
        await asyncio.sleep(0.05)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def main(mb: float, baseline: bool) -> dict[str, object]:
    page = hostile_page(int(mb * 1_000_000))
    report: dict[str, object] = {"benchmark": "browse_hostile_page", "page_mb": round(len(page) / 1e6, 1)}
    with ThreadedUvicorn(_app(page)) as server:
        web = Web(Fetcher(FetchConfig(allowed_networks=["127.0.0.1/32"], max_bytes=40_000_000)), None)
        pool = ExtractionPool(workers=1)  # defaults otherwise: 1 MB cap, 20 s deadline
        tool = BrowseTool(web, summariser=None, extractor=pool)
        try:
            await pool.start()
            (worker,) = pool._all
            pid = worker.process.pid
            cpu_before = _cpu_s(pid)
            samples: list[tuple[float, float]] = []
            sampler = asyncio.create_task(_sample(pid, samples))  # the worker may be killed: watch it live
            started = time.perf_counter()
            try:
                result = await tool(BrowseArgs(url=server.url + "/hostile.html", query="anything"))
                outcome = f"read: {len(result.text)} characters"
            except ToolError as exc:
                outcome = f"stopped: {exc}"
            sampler.cancel()
            report |= {
                "browse_s": round(time.perf_counter() - started, 2),
                "worker_cpu_s": round(max(cpu for cpu, _ in samples) - cpu_before, 2),
                "worker_peak_rss_mb": max(rss for _, rss in samples),
                "extract_cap_mb": pool.max_bytes / 1e6,
                "deadline_s": pool.timeout_s,
                "workers_killed": pool.killed,
                "outcome": outcome,
            }
        finally:
            pool.close()
        # Six hostile pages in flight (two workers, as configured by default), then a tiny page.
        pool = ExtractionPool(workers=2)
        tool = BrowseTool(web, summariser=None, extractor=pool)
        try:
            await pool.start()
            hostile = [asyncio.create_task(tool(BrowseArgs(url=server.url + "/hostile.html", query="q")))
                       for _ in range(6)]
            await asyncio.sleep(0.5)
            started = time.perf_counter()
            await tool(BrowseArgs(url=server.url + "/tiny.html", query="q"))
            report["tiny_page_s_with_six_hostile_in_flight"] = round(time.perf_counter() - started, 3)
            for task in hostile:
                task.cancel()
            await asyncio.gather(*hostile, return_exceptions=True)
        finally:
            pool.close()
            await web.aclose()
    if baseline:
        from gensearcher.web.extract import extract_text

        before = resource.getrusage(resource.RUSAGE_SELF)
        extract_text(page, "text/html")
        after = resource.getrusage(resource.RUSAGE_SELF)
        report["baseline_in_process_cpu_s"] = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2)
        report["baseline_peak_rss_mb"] = round(after.ru_maxrss / 1024, 1)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=16.0)
    parser.add_argument("--baseline", action="store_true", help="also time the old in-process path (about a minute)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.mb, args.baseline)), indent=2))
