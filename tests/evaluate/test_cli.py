"""`gensearcher judge` on reference-format files, `eval compare`, and WISE's Explanation kept from the agent."""

import json
import os
import re
import subprocess
import sys

from gensearcher.evaluate import load_wise
from gensearcher.testing import ScriptedPolicyServer
from tests.conftest import make_image


def judge_answer(body):
    item = re.match(r"Item (\S+)\.", body["messages"][-1]["content"][-1]["text"]).group(1)
    v = 1 if item in ("a", "c") else 0
    return json.dumps({"rationale": "Constraints: x.", "faithfulness": 1, "visual_correctness": v, "text_accuracy": v,
                       "aesthetics": 0.5})


def run(*args, cwd, env):
    return subprocess.run([sys.executable, "-m", "gensearcher", *args], capture_output=True, text=True, cwd=cwd,
                          env={"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), **env}, timeout=120)


def test_judge_round_trip_in_the_reference_formats(tmp_path):
    for name in ("a", "b", "c"):
        make_image(tmp_path / "gen" / f"{name}.png")
        make_image(tmp_path / "gt" / f"{name}.png", color=(0, 0, 200))
    rows = [{"id": name, "success": True, "prompt": f"prompt {name}", "meta": {"category": cat, "difficulty": "easy"},
             "output_path": f"gen/{name}.png", "gt_image": f"gt/{name}.png"}
            for name, cat in (("a", "sports"), ("b", "film"), ("c", "history"))]
    rows.append({"id": "d", "success": False, "prompt": "prompt d", "meta": {"category": "film"}, "error": "generation failed"})
    (tmp_path / "results.json").write_text(json.dumps(rows))
    with ScriptedPolicyServer(judge_answer) as judge:
        env = {"GENSEARCHER_JUDGE_BASE_URL": judge.base_url, "GENSEARCHER_JUDGE_MODEL": "judge",
               "GENSEARCHER_JUDGE_API_KEY": "judge-secret", "GENSEARCHER_CACHE_DIR": str(tmp_path / "cache")}
        first = run("judge", "--results", "results.json", "--out", "eval/results_eval.json", cwd=tmp_path, env=env)
        calls = len(judge.requests)
        again = run("judge", "--results", "results.json", "--out", "eval/results_eval.json", cwd=tmp_path, env=env)
        assert len(judge.requests) == calls == 3  # the rerun keeps every judged row
    assert first.returncode == 0, first.stderr
    out = json.loads((tmp_path / "eval" / "results_eval.json").read_text())
    by_id = {row.get("id"): row for row in out if "id" in row}
    assert by_id["a"]["eval_success"] and by_id["a"]["scores"]["overall"] == 0.95
    assert set(by_id["a"]["scores"]) >= {"rationale", "faithfulness", "visual_correctness", "text_accuracy", "aesthetics", "overall"}
    assert by_id["d"]["eval_success"] is False and by_id["d"]["scores"] is None and "not generated" in by_id["d"]["error"]
    assert [row["summary_type"] for row in out[-3:]] == ["science_and_knowledge", "pop_culture_and_news", "overall_avg"]
    scores = json.loads((tmp_path / "eval" / "scores.json").read_text())
    assert scores["overall"]["strict"]["k_score"] < scores["overall"]["reference"]["k_score"]
    assert "judge-secret" not in first.stdout + first.stderr + again.stdout
    compared = run("eval", "compare", "eval", "eval/results_eval.json", cwd=tmp_path, env={})
    report = json.loads(compared.stdout)
    assert report["paired_items"] == 4 and report["delta"] == 0 and report["significant"] is False


def test_wise_explanations_never_reach_the_agent(tmp_path):
    data = [{"Prompt": "A candle in space", "Explanation": "SECRET-GUIDE no flame", "Category": "Chemistry",
             "Subcategory": "", "prompt_id": 881},
            {"Prompt": "Mooncakes", "Explanation": "SECRET-GUIDE round cakes", "Category": "Cultural knowledge",
             "Subcategory": "Festival", "prompt_id": 12}]
    (tmp_path / "wise").mkdir()
    (tmp_path / "wise" / "natural_science_verified.json").write_text(json.dumps(data[:1]))
    (tmp_path / "wise" / "cultural_common_sense_verified.json").write_text(json.dumps(data[1:]))
    items = load_wise(tmp_path / "wise", "verified")
    assert sorted(item.id for item in items) == [12, 881]
    tasks = [item.model_dump_json() for item in items]
    assert all("SECRET-GUIDE" not in task for task in tasks)
    assert all(item.explanation.startswith("SECRET-GUIDE") for item in items)


def test_judge_wise_verified_uses_the_explanations(tmp_path):
    data = [{"Prompt": "A candle in space", "Explanation": "no flame, a faint sphere", "Category": "Chemistry",
             "Subcategory": "", "prompt_id": 881},
            {"Prompt": "Mooncakes", "Explanation": "round cakes with a pattern", "Category": "Cultural knowledge",
             "Subcategory": "Festival", "prompt_id": 12}]
    (tmp_path / "wise.json").write_text(json.dumps(data))
    make_image(tmp_path / "881.png")
    make_image(tmp_path / "12.png")
    rows = [{"id": d["prompt_id"], "success": True, "prompt": d["Prompt"], "meta": {"category": d["Category"]},
             "output_path": f"{d['prompt_id']}.png"} for d in data]
    (tmp_path / "results.json").write_text(json.dumps(rows))

    def verdict(body):
        text = body["messages"][-1]["content"][-1]["text"]
        return '{"score": 1, "rationale": "ok"}' if "no flame" in text else '{"score": 0, "rationale": "no"}'

    with ScriptedPolicyServer(verdict) as judge:
        env = {"GENSEARCHER_JUDGE_BASE_URL": judge.base_url, "GENSEARCHER_CACHE_DIR": str(tmp_path / "cache")}
        result = run("judge", "--results", "results.json", "--out", "eval/results_eval.json", "--benchmark",
                     "wise-verified", "--data", "wise.json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "eval" / "scores.json").read_text())
    assert scores["areas"]["chemistry"]["reference"] == 1.0 and scores["areas"]["culture"]["reference"] == 0.0
    assert scores["overall"]["reference"] == 0.12  # 0.40 x 0 (culture) + 0.12 x 1 (chemistry)


def test_eval_commands_check_their_input_before_any_work(tmp_path):
    (tmp_path / "kg.json").write_text(json.dumps([{"id": 1, "prompt": "p", "meta": {"category": "sports"}, "gt_image": "g.png"}]))
    cases = [
        (["eval", "knowgen", "--data", "missing.json", "--out", "o"], "file not found: missing.json"),
        (["eval", "knowgen", "--data", "kg.json", "--out", "o", "--categories", "film"], "no items left"),
        (["eval", "wise", "--data", "kg.json", "--out", "o", "--version", "newest"], "--version must be verified or legacy"),
        (["eval", "custom", "--data", "kg.json", "--out", "o", "--limit", "0"], "no items left"),
    ]
    for args, message in cases:
        result = run(*args, cwd=tmp_path, env={})
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
