"""The SFT benchmarks run at toy size here, so they do not rot (the GPU one needs a GPU for real numbers)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_sft_runs_in_tiny_mode_and_models_the_8b_memory():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_sft.py"), "--tiny"], capture_output=True,
                            text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["steps"] == 2 and report["tokens_per_s"] > 0 and report["tokens_per_row"] > 400
    model = report["memory_model_8b_full_ft_8x80gb"]
    assert 8.5 < model["parameters_b"] < 9.0 and model["trainable_b"] < model["parameters_b"]  # the tower is frozen
    assert model["at_32k_tokens"]["total"] < 80 and model["measured"] is False
