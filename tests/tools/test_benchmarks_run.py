"""The two issue-11 benchmarks run at toy size, so they do not rot (the figures come from full runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> dict:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_hostile_page_benchmark_runs_small():
    report = _run(str(ROOT / "benchmarks" / "browse_hostile_page.py"), "--mb", "1.5")
    assert report["benchmark"] == "browse_hostile_page" and report["worker_cpu_s"] >= 0
    assert report["outcome"].startswith(("read", "stopped"))


def test_image_search_bomb_benchmark_runs_small():
    report = _run(str(ROOT / "benchmarks" / "image_search_bomb.py"), "--count", "2", "--side", "4200")
    assert report["defaults"]["images_returned"] == 0 and report["defaults"]["decode_budget_peak_mb"] == 0
    assert report["old_40mp_cap_with_budget"]["images_returned"] == 2
