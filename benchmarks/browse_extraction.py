"""browse extraction throughput: main text of 200 stored HTML pages (trafilatura), one core.

Prints JSON: pages per second, median milliseconds per page, peak Python memory (tracemalloc) and the
process's peak RSS.

    python benchmarks/browse_extraction.py [--pages 200]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import time
import tracemalloc

from gensearcher.web.extract import extract_text

WORDS = ("stadium trophy jersey winner final season club poster film premiere architect tower bridge museum "
         "festival champion record engraved silver gold captain coach city river").split()


def page(seed: int) -> bytes:
    """A realistic news page: navigation, scripts, an article of 20-60 paragraphs, a sidebar, a footer."""
    rng = random.Random(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))).capitalize() + "."

    paragraphs = "".join(f"<p>{' '.join(sentence() for _ in range(rng.randint(2, 6)))}</p>" for _ in range(rng.randint(20, 60)))
    nav = "".join(f"<li><a href='/s/{i}'>{rng.choice(WORDS)}</a></li>" for i in range(40))
    side = "".join(f"<div class='card'><a href='/a/{i}'>{sentence()}</a></div>" for i in range(30))
    script = "<script>" + "var x = 1;" * 500 + "</script>"
    return (f"<html><head><title>Article {seed}</title>{script}<style>body{{margin:0}}</style></head><body>"
            f"<nav><ul>{nav}</ul></nav><main><article><h1>{sentence()}</h1>{paragraphs}</article></main>"
            f"<aside>{side}</aside><footer>{sentence()} Copyright.</footer></body></html>").encode()


def main(pages: int) -> dict[str, object]:
    corpus = [page(i) for i in range(pages)]
    extract_text(corpus[0], "text/html")  # imports and caches
    tracemalloc.start()
    timings, chars = [], 0
    started = time.perf_counter()
    for body in corpus:
        t0 = time.perf_counter()
        _, text = extract_text(body, "text/html")
        timings.append(time.perf_counter() - t0)
        chars += len(text)
    wall = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "benchmark": "browse_extraction",
        "pages": pages,
        "mean_page_kb": round(sum(map(len, corpus)) / pages / 1024, 1),
        "pages_per_s": round(pages / wall, 1),
        "median_ms_per_page": round(1000 * statistics.median(timings), 2),
        "extracted_chars": chars,
        "peak_traced_mb": round(peak / 2**20, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    print(json.dumps(main(parser.parse_args().pages), indent=2))
