"""The research agent end to end, offline: `make demo`.

A scripted OpenAI-compatible server stands in for the Gen-Searcher-8B policy (it replays the turns in
script.json), and the `local` backend searches a small corpus instead of the web. Everything else is the
real code path: the `gensearcher research` command, the agent loop, the tools, the trajectory.
Point GENSEARCHER_POLICY_BASE_URL at a served model to run the same command for real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from gensearcher.testing import ScriptedPolicyServer

HERE = Path(__file__).parent
OUT = Path("outputs/demo")


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


def main() -> int:
    corpus = OUT / "corpus"
    shutil.rmtree(OUT, ignore_errors=True)
    shutil.copytree(HERE / "corpus", corpus)
    draw_pictures(corpus / "images")
    script = json.loads((HERE / "script.json").read_text())
    prompt = next(iter(script))
    with ScriptedPolicyServer(script, model="Gen-Searcher-8B (scripted stand-in)") as server:
        env = {**os.environ, "GENSEARCHER_POLICY_BASE_URL": server.base_url,
               "GENSEARCHER_POLICY_MODEL": "Gen-Searcher-8B (scripted stand-in)"}
        command = [sys.executable, "-m", "gensearcher", "research", prompt, "--out", str(OUT / "run"),
                   "--search-backend", "local", "--local-corpus", str(corpus)]
        print("$", " ".join(command[2:4]), repr(prompt), " ".join(command[5:]), flush=True)
        result = subprocess.run(command, env=env)
    print(f"\ntrajectory: {OUT / 'run' / 'trajectory.json'}")
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
