"""image_search against ten valid 6300x6300 PNGs (about 130 KB each on the wire, 40 MP decoded), the
issue-11 bomb that peaked at 2.8 GB RSS.

The PNGs are served on loopback; each configuration runs in a fresh process that reports its own peak RSS
(ru_maxrss) before and after the search. Configurations: the defaults (16.7 MP cap: refused from the header,
nothing decoded), and the old 40 MP cap with the decode memory budget (all ten decoded, one at a time).
Prints JSON.

    python benchmarks/image_search_bomb.py
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

COUNT = 10  # --count and --side make a toy run (the tests use one)
SIDE = 6300


def _app(files: Path):  # type: ignore[no-untyped-def]
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response

    app = FastAPI()

    @app.post("/serper/images")
    async def images() -> JSONResponse:
        return JSONResponse({"images": [{"title": f"bomb {i}", "imageUrl": f"{app.state.url}/img/{i}.png"}
                                        for i in range(COUNT)]})

    @app.get("/img/{name}")
    async def image(name: str) -> Response:
        return Response((files / name).read_bytes(), media_type="image/png")

    return app


async def child(url: str, max_pixels: int | None) -> dict[str, object]:
    from gensearcher.config import FetchConfig
    from gensearcher.tools import ImageSearchArgs
    from gensearcher.tools.search import ImageSearchTool
    from gensearcher.tools.serper import SerperBackend
    from gensearcher.web import Fetcher, Web

    web = Web(Fetcher(FetchConfig(allowed_networks=["127.0.0.1/32"], per_host_concurrency=COUNT)), None)
    backend = SerperBackend(web, api_key="benchmark-key", search_url=url + "/serper/search",
                            images_url=url + "/serper/images")
    with tempfile.TemporaryDirectory() as tmp:
        options = {"max_pixels": max_pixels} if max_pixels else {}
        tool = ImageSearchTool(backend, web, image_dir=Path(tmp), candidates=COUNT, **options)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = await tool(ImageSearchArgs(query="bomb", top_k=COUNT))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        await tool.aclose()
    await web.aclose()
    return {"max_pixels": tool.max_pixels, "decode_budget_mb": tool.budget.total // 2**20,
            "images_returned": len(result.images), "decode_budget_peak_mb": round(tool.budget.peak / 2**20, 1),
            "rss_before_search_mb": round(before / 1024, 1), "peak_rss_mb": round(after / 1024, 1)}


def main(count: int, side: int) -> dict[str, object]:
    global COUNT, SIDE
    COUNT, SIDE = count, side
    from PIL import Image

    from gensearcher.testing.threaded_server import ThreadedUvicorn

    with tempfile.TemporaryDirectory() as tmp:
        files = Path(tmp)
        for i in range(COUNT):
            buffer = io.BytesIO()
            Image.new("RGB", (SIDE, SIDE), (20 * i, 80, 160)).save(buffer, format="PNG")
            (files / f"{i}.png").write_bytes(buffer.getvalue())
        wire_kb = round(sum(path.stat().st_size for path in files.iterdir()) / COUNT / 1024, 1)
        app = _app(files)
        with ThreadedUvicorn(app) as server:
            app.state.url = server.url
            runs = []
            for max_pixels in (None, 40_000_000):
                command = [sys.executable, __file__, "--child", server.url, str(max_pixels or 0), str(COUNT)]
                done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
                runs.append(json.loads(done.stdout))
    return {"benchmark": "image_search_bomb", "images": COUNT, "size": f"{SIDE}x{SIDE}", "wire_kb_each": wire_kb,
            "defaults": runs[0], "old_40mp_cap_with_budget": runs[1],
            "before_fix_peak_rss_mb": "about 2800 (issue 11, 40 MP cap, no budget)"}


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        COUNT = int(sys.argv[4])
        print(json.dumps(asyncio.run(child(sys.argv[2], int(sys.argv[3]) or None))))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--count", type=int, default=COUNT)
        parser.add_argument("--side", type=int, default=SIDE)
        args = parser.parse_args()
        print(json.dumps(main(args.count, args.side), indent=2))
