"""The whole job end to end, offline, in about a minute: `make demo`.

research -> generation -> judging -> report, through the real `gensearcher eval knowgen` command:

- the policy is a scripted OpenAI-compatible server standing in for Gen-Searcher-8B (it replays the turns
  in script.json), searching a small local corpus instead of the web;
- the generator is a tiny Qwen-Image pipeline built on the spot (gensearcher.testing.tiny_models): its
  pictures are noise, but every step of the real diffusers path runs;
- the judge is a second scripted server on 127.0.0.1 that answers in the judge's JSON format.

It ends by printing the `gensearcher view` command that opens the run. Point the settings in
outputs/demo/gensearcher.toml at served models to run the same command for real.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from gensearcher.testing import ScriptedPolicyServer

HERE = Path(__file__).parent
OUT = Path("outputs/demo")
MODELS = Path("outputs/demo-models")  # kept between runs: building the tiny pipelines takes a few seconds


def draw_pictures(folder: Path) -> None:
    """Stand-in photos: simple drawings, so the repository carries no binary files."""
    folder.mkdir(parents=True, exist_ok=True)
    runner = Image.new("RGB", (320, 400), (205, 225, 235))
    d = ImageDraw.Draw(runner)
    d.ellipse((130, 40, 190, 100), fill=(120, 80, 60))
    d.rectangle((120, 100, 200, 230), fill=(0, 128, 128))
    d.rectangle((120, 150, 200, 165), fill=(255, 255, 255))
    d.text((150, 180), "17", fill=(255, 255, 255))
    runner.save(folder / "okafor_finish.png")
    cup = Image.new("RGB", (300, 300), (240, 240, 240))
    d = ImageDraw.Draw(cup)
    d.rectangle((90, 250, 210, 285), fill=(20, 20, 20))
    d.polygon([(100, 60), (200, 60), (180, 200), (120, 200)], fill=(190, 190, 200))
    d.arc((50, 70, 120, 150), 90, 270, fill=(190, 190, 200), width=8)
    d.arc((180, 70, 250, 150), 270, 90, fill=(190, 190, 200), width=8)
    d.text((118, 120), "LAKESIDE 2026", fill=(60, 60, 60))
    cup.save(folder / "lakeside_cup.png")
    Image.new("RGB", (400, 240), (90, 150, 200)).save(folder / "lake_promenade.png")


def ground_truth(folder: Path, corpus: Path) -> list[Path]:
    """The benchmark's ground-truth pictures (a composite of the corpus drawings)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, names in enumerate([("okafor_finish", "lakeside_cup"), ("lakeside_cup", "lake_promenade"),
                                   ("lake_promenade",)]):
        canvas = Image.new("RGB", (512, 512), (250, 250, 245))
        for n, name in enumerate(names):
            with Image.open(corpus / "images" / f"{name}.png") as part:
                part.thumbnail((250, 480))
                canvas.paste(part, (6 + 256 * n, 16))
        paths.append(folder / f"{index}.png")
        canvas.save(paths[-1])
    return paths


def judge(body: dict[str, Any]) -> str:
    """The stand-in judge: reads the item id from the request and answers in the judge's JSON format."""
    text = body["messages"][-1]["content"]
    text = text if isinstance(text, str) else "".join(part.get("text", "") for part in text)
    item = int(re.search(r"Item (\d+)\.", text).group(1))
    value = [0.8, 0.6, 0.3][item % 3]
    return json.dumps({"rationale": f"Stand-in judge, item {item}: the subject is recognisable; the details "
                       "are a tiny model's noise.", "faithfulness": value, "visual_correctness": value,
                       "text_accuracy": 0.5, "text_accuracy_na": item == 1, "aesthetics": 0.5})


def tiny_models() -> tuple[Path, Path]:
    from gensearcher.testing.tiny_models import save_tiny_qwen_image

    text, edit = MODELS / "qwen-image", MODELS / "qwen-image-edit"
    if not (text / "model_index.json").is_file():
        save_tiny_qwen_image(text)
    if not (edit / "model_index.json").is_file():
        save_tiny_qwen_image(edit, edit=True)
    return text, edit


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    corpus = OUT / "corpus"
    shutil.copytree(HERE / "corpus", corpus)
    draw_pictures(corpus / "images")
    script = json.loads((HERE / "script.json").read_text())
    gt = ground_truth(OUT / "benchmark" / "gt", corpus)
    categories = ["sports", "sports", "news"]
    items = [{"id": i, "prompt": prompt, "meta": {"category": categories[i], "difficulty": "easy"},
              "gt_image": f"gt/{gt[i].name}"} for i, prompt in enumerate(script)]
    data = OUT / "benchmark" / "KnowGen-demo.json"
    data.write_text(json.dumps(items, indent=1))
    print("building the tiny generator ...", flush=True)
    text_model, edit_model = tiny_models()
    with ScriptedPolicyServer(script, model="Gen-Searcher-8B (scripted stand-in)") as policy, \
            ScriptedPolicyServer(judge, model="judge (scripted stand-in)") as judge_server:
        config = OUT / "gensearcher.toml"
        config.write_text(f"""output_dir = "{OUT}"
[policy]
base_url = "{policy.base_url}"
model = "Gen-Searcher-8B (scripted stand-in)"
[agent]
date = "2026-11-27"
max_llm_calls = 3
[search]
backend = "local"
local_corpus = "{corpus}"
[generator]
backend = "diffusers"
model = "{text_model}"
edit_model = "{edit_model}"
steps = 4
width = 256
height = 256
edit_condition_pixels = 4096
edit_vae_pixels = 4096
[judge]
base_url = "{judge_server.base_url}"
model = "judge (scripted stand-in)"
[cache]
dir = "{OUT / 'web-cache'}"
""")
        command = [sys.executable, "-m", "gensearcher", "eval", "knowgen", "--data", str(data),
                   "--out", str(OUT / "eval"), "--config", str(config), "--research-concurrency", "3"]
        print("$ gensearcher", " ".join(command[3:]), flush=True)
        result = subprocess.run(command, check=False)
    if result.returncode != 0:
        return result.returncode
    print(f"\nreport (a static site): {OUT / 'eval' / 'report' / 'index.html'}")
    print("open the run in the viewer:\n")
    print(f"    gensearcher view {OUT / 'eval'} --data-root {OUT / 'benchmark'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
