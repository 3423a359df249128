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


def run_benchmark(name: str, *args: str, timeout: int = 600) -> dict:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def test_grpo_rollouts_runs_in_quick_mode():
    pytest.importorskip("trl")
    report = run_benchmark("grpo_rollouts.py", "--quick")
    assert report["benchmark"] == "grpo_rollouts" and report["prompts"] * report["rollouts_per_prompt"] == 6
    assert isinstance(report["ratio"], float) and report["ratio"] > 0
    assert [(r["limits"], r["variant"]) for r in report["results"]] == [
        ("raised", "unique"), ("raised", "repeated"), ("shipped", "unique")]
    for row in report["results"]:
        assert row["rollouts"] == 6 and row["rounds"]["max"] == 3 and row["rounds"]["min"] == 2
        # The critical path is computed from the recorded rollouts: 3 turns, 2 tool calls, generation, judgement.
        assert row["critical_path_s"] == pytest.approx(3 * 0.2 + 2 * 0.1 + 0.3 + 0.5)
        assert row["wall_s"] > 0 and row["cpu_ms_per_rollout"] > 0 and row["serial_tools_s"] > 0
    unique, repeated = report["results"][0], report["results"][1]
    assert unique["serper_requests"] == unique["tool_calls"]  # unique queries: every call reached the API
    assert repeated["serper_requests"] < repeated["tool_calls"]  # a group's identical searches were fetched once


def test_gpu_grpo_runs_in_tiny_mode():
    pytest.importorskip("trl")
    report = run_benchmark("gpu_grpo.py", "--tiny")
    assert report["benchmark"] == "gpu_grpo" and report["device"] == "cpu" and report["dtype"] == "float32"
    assert [row["step"] for row in report["steps"]] == [1, 2]
    for row in report["steps"]:
        # Every rollout researched three rounds, was scored, and its reward went into an update.
        assert row["excluded_fraction"] == 0 and row["reward_std"] > 0
        assert sum(row["batch_sizes"]) == 8 * 3 and row["generate_calls"] == len(row["batch_sizes"])
        assert 0 < row["policy_generate_s"] <= row["rollout_phase_s"] < row["step_s"]
        assert row["update_s"] > 0 and row["sampled_tokens"] > 0 and row["sampled_tokens_per_s"] > 0
    assert [r["rollouts"] for r in report["rewards"]] == [8, 8] and all(r["policy_failures"] == 0 for r in report["rewards"])
