"""Benchmarks that need a GPU are still exercised here, at toy size, so they do not rot."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_generate_runs_in_tiny_mode():
    pytest.importorskip("diffusers")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_generate.py"), "--tiny"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [row["batch"] for row in report["batches"]] == [1, 2, 4]
    assert all(row["seconds_per_image"] >= 0 for row in report["batches"])
