"""The command line, run as a real process against a scripted policy server and a local corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gensearcher.testing import ScriptedPolicyServer
from tests.conftest import make_image
from tests.helpers import answer, call

PROMPT = "The yellow jersey winner on the podium"


def gensearcher(*args: str, cwd: Path, env: dict[str, str] | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # A checkout under test (PYTHONPATH=src) stays first on the path of the command.
    python_path = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    full_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), **python_path, **(env or {})}
    return subprocess.run([sys.executable, "-m", "gensearcher", *args], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=timeout, check=False)


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    (root / "tour.md").parent.mkdir(parents=True, exist_ok=True)
    (root / "tour.md").write_text("# Tour 2026\nThe winner wore the yellow jersey on the podium.\n")
    make_image(root / "podium.png")
    make_image(root / "yellow_jersey.png", color=(250, 220, 0))
    return root


def test_research_one_prompt_end_to_end(tmp_path, corpus):
    script = {PROMPT: [call("search", queries=["tour 2026 winner"]), call("image_search", query="yellow jersey"),
                       answer("The rider in the first reference image on a podium.", "IMG_001")]}
    with ScriptedPolicyServer(script, model="Gen-Searcher-8B") as server:
        result = gensearcher("research", PROMPT, "--out", "run", "--search-backend", "local", "--local-corpus", str(corpus),
                             cwd=tmp_path, env={"GENSEARCHER_POLICY_BASE_URL": server.base_url,
                                                "GENSEARCHER_POLICY_MODEL": "Gen-Searcher-8B",
                                                "GENSEARCHER_POLICY_API_KEY": "sk-do-not-leak"})
        requests = server.requests
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["termination"] == "answer"
    assert summary["reference_images"][0]["url"].endswith("yellow_jersey.png")
    assert Path(summary["reference_images"][0]["local_path"]).is_file()
    trajectory = json.loads((tmp_path / "run" / "trajectory.json").read_text())
    assert trajectory["config"]["policy"]["api_key"] == "***"
    assert "sk-do-not-leak" not in (tmp_path / "run" / "trajectory.json").read_text()
    assert "Tour 2026" in trajectory["steps"][0]["tool_call"]["result_text"]
    assert requests[0]["model"] == "Gen-Searcher-8B"


def test_research_batch_with_resume(tmp_path, corpus):
    tasks = [{"id": i, "prompt": f"{PROMPT} {i}", "meta": {"category": "sports"}, "gt_image": None} for i in range(3)]
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    script = {t["prompt"]: [call("image_search", query="podium"), answer("x", "IMG_001")] for t in tasks}
    env_args = ["--search-backend", "local", "--local-corpus", str(corpus)]
    with ScriptedPolicyServer(script) as server:
        env = {"GENSEARCHER_POLICY_BASE_URL": server.base_url, "GENSEARCHER_POLICY_MODEL": "m"}
        first = gensearcher("research", "--input", "tasks.json", "--out", "batch", "--concurrency", "2", *env_args,
                            cwd=tmp_path, env=env)
        again = gensearcher("research", "--input", "tasks.json", "--out", "batch", *env_args, cwd=tmp_path, env=env)
        resumed = gensearcher("research", "--input", "tasks.json", "--out", "batch", "--resume", *env_args,
                              cwd=tmp_path, env=env)
        asked = len(server.requests)
    assert first.returncode == 0, first.stderr
    assert "[3/3]" in first.stderr  # progress lines when not on a terminal
    rows = json.loads((tmp_path / "batch" / "results.json").read_text())
    assert [row["termination"] for row in rows] == ["answer"] * 3
    assert again.returncode == 2 and "--resume" in again.stderr
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["skipped"] == 3 and asked == 6


@pytest.mark.parametrize("args, env, message", [
    (["research", "x"], {}, "no policy configured"),
    (["research", "x"], {"GENSEARCHER_POLICY_BASE_URL": "http://127.0.0.1:9/v1"}, "GENSEARCHER_POLICY_MODEL is not set"),
    (["research", "x", "--search-backend", "serper"],
     {"GENSEARCHER_POLICY_BASE_URL": "http://127.0.0.1:9/v1", "GENSEARCHER_POLICY_MODEL": "m"}, "SERPER_KEY_ID"),
    (["research", "x"], {"GENSEARCHER_POLICY_BASE_URL": "http://127.0.0.1:9/v1", "GENSEARCHER_POLICY_MODEL": "m",
                         "GENSEARCHER_SEARCH_BACKEND": "searxng"}, "GENSEARCHER_SEARCH_SEARXNG_URL is not set"),
    (["research", "x", "--search-backend", "local"],
     {"GENSEARCHER_POLICY_BASE_URL": "http://127.0.0.1:9/v1", "GENSEARCHER_POLICY_MODEL": "m"},
     "GENSEARCHER_SEARCH_LOCAL_CORPUS is not set"),
    (["research"], {}, "either a PROMPT or --input"),
    (["research", "--input", "missing.json"], {}, "file not found: missing.json"),
    (["research", "x", "--system-prompt-file", "nope.md"], {}, "system prompt file not found"),
])
def test_user_errors_are_one_line_exit_2(tmp_path, args, env, message):
    result = gensearcher(*args, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_prompt_import_of_a_folder_that_is_no_checkout_is_one_line(tmp_path):
    # The import itself (parsed, never run; texts verbatim) is tested in tests/agent/test_reference_texts.py.
    agent_file = tmp_path / "checkout" / "Gen-DeepResearch-RL/rllm/vision_deepresearch_async_workflow/gen_image_deepresearch_agent.py"
    agent_file.parent.mkdir(parents=True)
    agent_file.write_text('raise SystemExit("this file must not run")\nSYSTEM_PROMPT_GEN_IMAGE = "x"\n')
    result = gensearcher("prompts", "import-reference", "checkout", "--out", "ref.json", cwd=tmp_path)
    assert result.returncode == 2 and "cannot find Gen-DeepResearch-RL" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "ref.json").exists()
    missing = gensearcher("prompts", "import-reference", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode == 2 and "not a folder" in missing.stderr


POLICY = {"GENSEARCHER_POLICY_BASE_URL": "http://127.0.0.1:9/v1", "GENSEARCHER_POLICY_MODEL": "m"}


@pytest.mark.parametrize("args, setting", [
    (["research", "--input", "tasks.json", "--concurrency", "0"], "GENSEARCHER_AGENT_CONCURRENCY"),
    (["generate", "--input", "tasks.json", "--out", "images", "--concurrency", "0"], "GENSEARCHER_GENERATOR_CONCURRENCY"),
    (["judge", "--results", "tasks.json", "--out", "eval/results_eval.json", "--concurrency", "0"],
     "GENSEARCHER_JUDGE_CONCURRENCY"),
    (["eval", "knowgen", "--data", "tasks.json", "--out", "kg", "--judge-concurrency", "0"],
     "GENSEARCHER_JUDGE_CONCURRENCY"),
    (["eval", "knowgen", "--data", "tasks.json", "--out", "kg", "--research-concurrency", "-3"],
     "GENSEARCHER_AGENT_CONCURRENCY"),
    (["eval", "custom", "--data", "tasks.json", "--out", "kg", "--generate-concurrency", "0"],
     "GENSEARCHER_GENERATOR_CONCURRENCY"),
])
def test_a_non_positive_concurrency_is_a_one_line_error_not_a_hang(tmp_path, args, setting):
    (tmp_path / "tasks.json").write_text(json.dumps([{"id": 0, "prompt": "p", "gt_image": "gt.png"}]))
    result = gensearcher(*args, cwd=tmp_path, env=POLICY, timeout=60)
    assert result.returncode == 2, result.stderr
    assert setting in result.stderr and "greater than or equal to 1" in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert not (tmp_path / "kg").exists() and not (tmp_path / "eval").exists()


def test_grpo_refuses_bad_input_in_one_line_before_loading_anything(tmp_path):
    missing = gensearcher("train", "grpo", "--model", "ckpt/sft", "--data", "nowhere", "--out", "o", cwd=tmp_path)
    errors = [line for line in missing.stderr.splitlines() if line.startswith("error:")]
    assert missing.returncode == 2 and len(errors) == 1 and errors[0].startswith("error: nowhere: no RL prompts"), \
        missing.stderr
    (tmp_path / "grpo.yaml").write_text("num_rollouts: 6\n")
    unknown = gensearcher("train", "grpo", "--model", "m", "--data", "d", "--out", "o", "--config", "grpo.yaml",
                          cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown GRPO config field(s): num_rollouts" in unknown.stderr
    (tmp_path / "vllm.yaml").write_text("use_vllm: true\n")
    vllm = gensearcher("train", "grpo", "--model", "m", "--data", "d", "--out", "o", "--config", "vllm.yaml", cwd=tmp_path)
    assert vllm.returncode == 2 and "vLLM generation is not supported yet" in vllm.stderr


def test_judge_accepts_rows_without_id_as_the_reference_does(tmp_path):
    """The reference evaluator numbers rows without `id` by their index; so do we."""
    for index in range(3):
        make_image(tmp_path / "gen" / f"{index}.png")
        make_image(tmp_path / "gt" / f"{index}.png", color=(0, 0, 200))
    rows = [{"success": True, "prompt": f"prompt {index}", "meta": {"category": "sports", "difficulty": "easy"},
             "output_path": f"gen/{index}.png", "gt_image": f"gt/{index}.png"} for index in range(3)]
    (tmp_path / "results.json").write_text(json.dumps(rows))

    def judge_answer(body):
        return json.dumps({"rationale": "Constraints: x.", "faithfulness": 1, "visual_correctness": 1,
                           "text_accuracy": 0.5, "aesthetics": 1})

    with ScriptedPolicyServer(judge_answer) as judge:
        env = {"GENSEARCHER_JUDGE_BASE_URL": judge.base_url, "GENSEARCHER_JUDGE_MODEL": "judge",
               "GENSEARCHER_CACHE_DIR": str(tmp_path / "cache")}
        result = gensearcher("judge", "--results", "results.json", "--out", "eval/results_eval.json", "--concurrency",
                             "2", "--no-progress", cwd=tmp_path, env=env)
        prompts = sorted(str(request["messages"]) for request in judge.requests)
    assert result.returncode == 0, result.stderr
    judged = [row for row in json.loads((tmp_path / "eval" / "results_eval.json").read_text()) if "summary_type" not in row]
    assert [(row["id"], row["prompt"], row["eval_success"]) for row in judged] == [
        (index, f"prompt {index}", True) for index in range(3)]
    assert len(prompts) == 3 and all(f"prompt {index}" in prompts[index] for index in range(3))
