"""Data -> training -> inference, end to end, through the command line.

Trajectories recorded with the scripted policy against the local web become SFT rows (`data sft`); a tiny
random Qwen3-VL is fine-tuned on them until it has memorised them (`train sft`); then `research` runs with
that checkpoint in process, greedily: its first turn is the trained tool call, our protocol parses it, our
tools run it against the local web, and the run goes on to the trained answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.train.conftest import DATE, SHORT_PROMPT

RECIPE = """\
learning_rate: 0.004
max_steps: 90
lr_scheduler_type: constant
warmup_steps: 0
per_device_train_batch_size: 2
gradient_checkpointing: false
save_strategy: "no"
logging_steps: 15
disable_tqdm: true
"""


def gensearcher(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600):
    # One thread: on a small shared machine two threads per process spin against each other (5-10x slower).
    full = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "gensearcher", *args], capture_output=True, text=True, cwd=cwd, check=False,
                          env=full, timeout=timeout)


def test_trained_checkpoint_researches_with_the_trained_tool_call(recorded, tiny_checkpoint, prompt_file,
                                                                  local_web, tmp_path):
    converted = gensearcher("data", "sft", "--from", str(recorded), "--out", "data", cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    report = json.loads(converted.stdout)
    assert report["rows"] == 2 and report["skipped"] == 1 and "termination is 'no_answer'" in converted.stderr

    (tmp_path / "sft.yaml").write_text(RECIPE)
    trained = gensearcher("train", "sft", "--model", str(tiny_checkpoint), "--data", "data", "--out", "ckpt",
                          "--config", "sft.yaml", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    losses = json.loads(trained.stdout)["losses"]
    assert "'loss'" in trained.stderr  # the trainer's progress lines show while it runs
    assert losses[-1] < 0.05 < losses[0]
    checkpoint = tmp_path / "ckpt"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", "training.json"):
        assert (checkpoint / name).is_file(), name
    record = json.loads((checkpoint / "training.json").read_text())
    assert record["dataset_rows"] == 2 and record["config"]["learning_rate"] == 0.004 and record["frozen_parameters"] > 0

    env = {"GENSEARCHER_POLICY_MODEL": str(checkpoint), "GENSEARCHER_POLICY_TEMPERATURE": "0",
           "GENSEARCHER_AGENT_DATE": DATE, "GENSEARCHER_AGENT_MAX_LLM_CALLS": "1",
           "GENSEARCHER_AGENT_MAX_NEW_TOKENS_PER_TURN": "120", "SERPER_KEY_ID": "test-key",
           "GENSEARCHER_SEARCH_BACKEND": "serper", "TEXT_SEARCH_API_BASE_URL": local_web.url + "/serper/search",
           "IMAGE_SEARCH_API_BASE_URL": local_web.url + "/serper/images", "GENSEARCHER_SEARCH_SUMMARISE": "false",
           "GENSEARCHER_FETCH_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
           # The recording's image folder: the found picture gets the same local_path as in training, so the
           # final round's context is the memorised one (the web cache is fresh: the tools fetch again).
           "GENSEARCHER_SEARCH_IMAGE_DIR": str(recorded / "images")}
    assert SHORT_PROMPT in prompt_file.read_text()
    hits_before = local_web.hits.copy()
    run = gensearcher("research", "A poster of the red team", "--out", "final", "--system-prompt-file",
                      str(prompt_file), cwd=tmp_path, env=env)
    trajectory = json.loads((tmp_path / "final" / "trajectory.json").read_text())
    first = trajectory["steps"][0]
    assert trajectory["versions"]["policy"]["backend"] == "transformers"
    assert first["action"] == "tool_call", first["response"]
    assert first["tool_call"]["name"] == "image_search"
    assert first["tool_call"]["arguments"] == {"query": "red team", "top_k": 1}
    assert "--- image search result for [red team] ---" in first["tool_call"]["result_text"]
    assert sum((local_web.hits - hits_before).values()) > 0  # our tools really went to the web
    # The run goes on: the final round's answer is the memorised one, citing the image the tool found.
    assert len(trajectory["steps"]) == 2
    assert run.returncode == 0 and trajectory["termination"] == "answer", trajectory["steps"][1]["response"]
    assert trajectory["answer"]["gen_prompt"] == "A poster of the red team, colours as in the reference."
    assert [r["img_id"] for r in trajectory["answer"]["reference_images"]] == ["IMG_001"]
