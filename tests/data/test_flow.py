"""The stages hold together on the reference system's own files, used as a new user would: from another
working folder, with relative and legacy paths, a reference agent output written elsewhere, a moved run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

from gensearcher.agent.trajectory import load_trajectory
from gensearcher.testing import ScriptedPolicyServer
from tests.conftest import make_image
from tests.helpers import answer, call

SMALL = {"GENSEARCHER_GENERATOR_EDIT_CONDITION_PIXELS": "4096", "GENSEARCHER_GENERATOR_EDIT_VAE_PIXELS": "4096",
         "GENSEARCHER_GENERATOR_STEPS": "2", "GENSEARCHER_GENERATOR_WIDTH": "64", "GENSEARCHER_GENERATOR_HEIGHT": "64"}


def gensearcher(*args, cwd, env):
    return subprocess.run([sys.executable, "-m", "gensearcher", *args], capture_output=True, text=True, cwd=cwd,
                          env={"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), **env}, timeout=300)


def judge_answer(body):
    item = re.match(r"Item (\S+)\.", body["messages"][-1]["content"][-1]["text"]).group(1)
    return json.dumps({"rationale": "Constraints: ok.", "faithfulness": 1, "visual_correctness": 0.75 if item == "0" else 0.7,
                       "text_accuracy": 1, "aesthetics": 1})


def write_knowgen(folder):
    """A KnowGen file with a relative `gt_image` and a legacy `gen_image`, pictures beside it."""
    make_image(folder / "gt_image" / "answer_0.png", color=(0, 120, 0))
    make_image(folder / "gt_image" / "answer_1.png", color=(0, 0, 120))
    items = [{"id": 0, "prompt": "task 0", "meta": {"category": "sports", "difficulty": "easy"},
              "gt_image": "gt_image/answer_0.png"},
             {"id": 1, "prompt": "task 1", "meta": {"category": "film", "difficulty": "hard"},
              "gen_image": "gt_image/answer_1.png"}]
    (folder / "KnowGen-Bench.json").write_text(json.dumps(items, indent=2))


def test_research_generate_judge_from_another_folder(tmp_path, tiny_text_model, tiny_edit_model):
    bench, work, corpus = tmp_path / "bench", tmp_path / "elsewhere", tmp_path / "corpus"
    write_knowgen(bench)
    make_image(corpus / "podium.png", size=(96, 96), color=(200, 200, 10))
    (corpus / "notes.md").write_text("# Notes\nA podium by the lake.\n")
    work.mkdir()
    script = {f"task {i}": [call("image_search", query="podium"), answer("the podium of the first reference image", "IMG_001")]
              for i in range(2)}
    with ScriptedPolicyServer(script) as policy, ScriptedPolicyServer(judge_answer) as judge:
        env = {"GENSEARCHER_POLICY_BASE_URL": policy.base_url, "GENSEARCHER_POLICY_MODEL": "m",
               "GENSEARCHER_GENERATOR_MODEL": str(tiny_text_model), "GENSEARCHER_GENERATOR_EDIT_MODEL": str(tiny_edit_model),
               "GENSEARCHER_JUDGE_BASE_URL": judge.base_url, "GENSEARCHER_JUDGE_MODEL": "judge",
               "GENSEARCHER_CACHE_DIR": str(tmp_path / "cache"), **SMALL}
        research = gensearcher("research", "--input", "../bench/KnowGen-Bench.json", "--out", "runs/kg",
                               "--search-backend", "local", "--local-corpus", str(corpus), cwd=work, env=env)
        assert research.returncode == 0, research.stderr
        generate = gensearcher("generate", "--input", "runs/kg/results.json", "--out", "runs/kg-images", cwd=work, env=env)
        assert generate.returncode == 0, generate.stderr
        judged = gensearcher("judge", "--results", "runs/kg-images/results.json", "--out", "runs/kg-eval/results_eval.json",
                             cwd=work, env=env)
        assert judged.returncode == 0, judged.stderr
    researched = json.loads((work / "runs/kg/results.json").read_text())
    assert [row["gt_image"] for row in researched] == [str(bench / "gt_image" / f"answer_{i}.png") for i in range(2)]
    assert researched[0]["trajectory_messages"][1] == {"role": "user", "content": "task 0", "images": []}
    assert any(turn["images"] for turn in researched[0]["trajectory_messages"])  # the picture the policy saw
    rows = json.loads((work / "runs/kg-eval/results_eval.json").read_text())
    items = [row for row in rows if "id" in row]
    assert [row["eval_success"] for row in items] == [True, True], items
    assert [row["scores"]["visual_correctness"] for row in items] == [0.75, 0.7]  # as the judge wrote them
    summary = {row["summary_type"]: row for row in rows if "summary_type" in row}
    scores = json.loads((work / "runs/kg-eval/scores.json").read_text())
    for group in ("science_and_knowledge", "pop_culture_and_news"):
        assert round(100 * summary[group]["avg_scores"]["overall"], 2) == scores["groups"][group]["reference"]["k_score"]
    assert round(100 * summary["overall_avg"]["avg_scores"]["overall"], 2) == scores["overall"]["reference"]["k_score"]


def test_reference_agent_output_with_paths_relative_to_its_start_folder(tmp_path, tiny_text_model, tiny_edit_model):
    """The reference writes `eval_output/test/ref_images/...` relative to the folder it ran in (`rllm/`)."""
    rllm = tmp_path / "Gen-Searcher" / "rllm"
    out = rllm / "eval_output" / "test"
    make_image(out / "ref_images" / "3260_IMG_001.jpg", size=(80, 60), color=(10, 90, 200))
    make_image(tmp_path / "Gen-Searcher" / "KnowGen" / "gt" / "3260.png")
    row = {"id": 3260, "prompt": "the trophy", "meta": {"category": "sports", "difficulty": "easy"}, "termination": "answer",
           "trajectory_messages": [{"role": "user", "content": "the trophy", "images": []}],
           "gen_prompt": "the trophy in the first reference image",
           "reference_images": [{"img_id": "IMG_001", "note": "the cup", "title": "Cup", "url": "https://x.org/c.jpg",
                                 "local_path": "eval_output/test/ref_images/3260_IMG_001.jpg"}],
           "gt_image": "../KnowGen/gt/3260.png", "custom_field": {"kept": True}}
    (out / "results.json").write_text(json.dumps([row]))
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    env = {"GENSEARCHER_GENERATOR_MODEL": str(tiny_text_model), "GENSEARCHER_GENERATOR_EDIT_MODEL": str(tiny_edit_model),
           **SMALL}
    result = gensearcher("generate", "--input", str(out / "results.json"), "--out", "images", cwd=elsewhere, env=env)
    assert result.returncode == 0, result.stderr
    rendered = json.loads((elsewhere / "images" / "results.json").read_text())[0]
    assert rendered["success"] and rendered["used_images"] == [str(out / "ref_images" / "3260_IMG_001.jpg")]


async def test_a_moved_run_folder_still_opens_and_resumes(tmp_path, make_agent, tools, picture_dir):
    from gensearcher.agent import BatchRunner, load_tasks

    (tmp_path / "tasks.json").write_text(json.dumps([{"id": "a", "prompt": "p a"}, {"id": "b c", "prompt": "p b"}]))
    tasks = load_tasks(tmp_path / "tasks.json")
    script = {f"p {x}": [call("image_search", query="podium"), answer("the first reference image", "IMG_002")] for x in "ab"}
    first = tmp_path / "first"
    # The tools' pictures and the policy's copies live inside the run folder, as a real run stores them.
    shutil.copytree(picture_dir, first / "downloads")
    tools.picture_dir = first / "downloads"
    with ScriptedPolicyServer(script) as server:
        agent = make_agent(server)
        agent.image_dir = first / "images" / "policy"
        await BatchRunner(agent, first).run(tasks)
    stored = json.loads((first / "trajectories" / "a.json").read_text())
    assert stored["schema_version"] == 2
    assert stored["answer"]["reference_images"][0]["local_path"] == "downloads/pic1.png"
    assert all(not image["path"].startswith("/") for m in stored["messages"] for image in m["images"])

    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(str(first), str(moved))
    for name in ("a.json", sorted(p.name for p in (moved / "trajectories").iterdir())[0]):
        trajectory = load_trajectory(moved / "trajectories" / name)
        paths = [image.path for m in trajectory.messages for image in m.images]
        paths += [ref.local_path for ref in trajectory.answer.reference_images]
        assert paths and all(os.path.isfile(path) and path.startswith(str(moved)) for path in paths)
    with ScriptedPolicyServer(script) as server:
        summary = await BatchRunner(make_agent(server), moved, resume=True).run(tasks)
        assert server.requests == []  # nothing researched again
    assert summary.skipped == 2
    rows = json.loads((moved / "results.json").read_text())
    assert rows[0]["reference_images"][0]["local_path"] == str(moved / "downloads" / "pic1.png")
