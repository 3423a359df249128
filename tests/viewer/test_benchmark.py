"""benchmarks/viewer.py runs at toy size, so it does not rot (the figures come from the full run)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_viewer_benchmark_runs_at_toy_size():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "viewer.py"), "--sizes", "40", "--requests", "4"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    run = report["runs"][0]
    assert run["items"] == 40 and run["server_rss_mb"] > 0
    assert run["items_page_ttfb"]["median_ms"] > 0 and run["item_page_ttfb"]["median_ms"] > 0
