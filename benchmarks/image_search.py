"""image_search latency: 10 candidates, each image served in 300 ms, against one download.

The reference system downloads candidates one at a time (about 10x one download); ours downloads them
concurrently. Target (issue 3): image_search within 1.5x of a single download. Prints JSON.

    python benchmarks/image_search.py
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from gensearcher.config import FetchConfig
from gensearcher.images import store_image_bytes
from gensearcher.testing.local_web import LocalWeb
from gensearcher.tools import ImageSearchArgs
from gensearcher.tools.search import ImageSearchTool
from gensearcher.tools.serper import SerperBackend
from gensearcher.web import Fetcher, Web

SERVE_S = 0.3


async def main(repeats: int = 5) -> dict[str, object]:
    with LocalWeb(slow_s=SERVE_S) as site, tempfile.TemporaryDirectory() as tmp:
        web = Web(Fetcher(FetchConfig(allowed_networks=["127.0.0.1/32"], per_host_concurrency=10)), None)
        backend = SerperBackend(web, api_key="test-key", search_url=site.url + "/serper/search",
                                images_url=site.url + "/serper/images")
        tool = ImageSearchTool(backend, web, image_dir=Path(tmp), candidates=10)
        singles, searches, counts = [], [], []
        for i in range(repeats):
            started = time.perf_counter()
            result = await web.fetch(f"{site.url}/img/slow-{i}.jpg")
            await asyncio.to_thread(store_image_bytes, result.body, Path(tmp) / "one", declared_type=result.content_type)
            singles.append(time.perf_counter() - started)
            started = time.perf_counter()
            found = await tool(ImageSearchArgs(query=f"slow {i}", top_k=10))
            searches.append(time.perf_counter() - started)
            counts.append(len(found.images))
        await web.aclose()
    one, search = statistics.median(singles), statistics.median(searches)
    return {
        "benchmark": "image_search",
        "candidates": 10,
        "served_in_s": SERVE_S,
        "one_download_s": round(one, 3),
        "image_search_s": round(search, 3),
        "ratio": round(search / one, 3),
        "images_returned": counts,
        "target_ratio": 1.5,
        "reference_system_ratio": "about 10 (serial downloads)",
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
