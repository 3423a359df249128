"""Importing an SFT-10k-sized sharegpt file: 10,000 agent-shaped rows over a pool of real-size photos.

Every row is validated (roles, placeholders, images, protocol parse of every assistant turn, IMG ids) and
every distinct picture is decoded and capped to 160,000 pixels once. Prints JSON: rows/s, seconds, peak
resident memory, and the size of the dataset written.

    python benchmarks/sft_import.py [--rows 10000] [--images 100]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def write_file(folder: Path, rows: int, images: int) -> Path:
    from PIL import Image

    for i in range(images):
        Image.effect_noise((1328, 1000), 20 + i % 60).convert("RGB").save(folder / f"p{i}.jpg", quality=90)
    call = '<think>Look.</think>\n<tool_call>\n{"name": "image_search", "arguments": {"query": "trophy %d"}}\n</tool_call>'
    result = "<image><image><tool_response>\n--- image search result ---\nIMG_%03d: a\nIMG_%03d: b\n</tool_response>"
    answer = ('<think>Done.</think>\n<answer>{"gen_prompt": "The trophy.", "reference_images": '
              '[{"img_id": "IMG_001", "note": "cup"}]}</answer>')
    items = []
    for n in range(rows):
        messages = [{"role": "system", "content": "You are a research agent. " * 40},
                    {"role": "user", "content": f"The 2026 trophy, item {n}"}]
        paths = []
        for turn in range(4):
            messages += [{"role": "assistant", "content": call % turn},
                         {"role": "user", "content": result % (2 * turn + 1, 2 * turn + 2)}]
            paths += [f"p{(n * 8 + 2 * turn + k) % images}.jpg" for k in range(2)]
        messages.append({"role": "assistant", "content": answer})
        items.append({"messages": messages, "images": paths})
    path = folder / "sft_data.json"
    path.write_text(json.dumps(items))
    return path


def main() -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--images", type=int, default=100)
    args = parser.parse_args()
    from gensearcher.train.sharegpt import import_sharegpt

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        source = write_file(folder, args.rows, args.images)
        started = time.perf_counter()
        manifest, _ = import_sharegpt(source, folder / "data", images_root=None, max_pixels=160_000)
        seconds = time.perf_counter() - started
        size = sum(p.stat().st_size for p in (folder / "data").rglob("*") if p.is_file())
    return {"benchmark": "sft_import", "rows": manifest.rows, "skipped": len(manifest.skipped),
            "distinct_images": manifest.images, "seconds": round(seconds, 1),
            "rows_per_s": round(manifest.rows / seconds, 1), "dataset_mb": round(size / 2**20, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
