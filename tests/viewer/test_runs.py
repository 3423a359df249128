"""The run index over every folder shape the commands write, and its refresh while a run is going."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from gensearcher.viewer import RunIndex
from gensearcher.viewer.runs import Query
from gensearcher.viewer.sample_runs import write_sample_run


def test_research_only_generate_only_and_eval_folders(sample, tmp_path):
    research = tmp_path / "research-batch"
    shutil.copytree(sample["a"] / "research", research)
    generate = tmp_path / "generate-out"
    shutil.copytree(sample["a"] / "images", generate)
    index = RunIndex([research, generate, sample["a"]])
    try:
        infos = index.runs()
        assert [i.stages for i in infos] == [["research"], ["generate"], ["research", "generate", "judge"]]
        assert [i.items for i in infos] == [12, 12, 12] and infos[1].generated == 11  # item 5 ended without an answer
        assert infos[0].terminations == {"answer": 11, "no_answer": 1}
        item = index.item(0, "2")
        assert item.research.gen_prompt and item.trajectory_path.endswith("trajectories/2.json")
        assert item.generation is None and index.item(1, "2").output.endswith(".png")
        assert index.item(2, "2").judged.scores.overall is not None
    finally:
        index.close()


def test_queries_filter_sort_and_page_on_the_server(sample):
    index = RunIndex([sample["a"]])
    try:
        total, page = index.query(0, Query(per_page=5, page=2))
        assert total == 12 and [i.id for i in page] == ["5", "6", "7", "8", "9"]
        total, films = index.query(0, Query(category="film"))
        assert [i.id for i in films] == ["1", "6", "11"]
        total, ranged = index.query(0, Query(min_score=0.3, max_score=0.6, sort="score"))
        assert all(0.3 <= i.score <= 0.6 for i in ranged)
        assert [i.score for i in ranged] == sorted(i.score for i in ranged)
        assert [i.id for i in index.query(0, Query(text="NUMBER 11"))[1]] == ["11"]
        assert index.query(0, Query(text="100%_"))[0] == 0 and index.query(0, Query(text="\" OR *"))[0] == 0
        assert [i.id for i in index.query(0, Query(text="Subject number 1"))[1]] == ["1", "10", "11"]  # the last word may be a start
    finally:
        index.close()


def test_a_run_folder_and_a_lone_trajectory(sample, tmp_path):
    run = tmp_path / "poster"
    run.mkdir()
    shutil.copy(sample["a"] / "research" / "trajectories" / "3.json", run / "trajectory.json")
    shutil.copy(sample["a"] / "images" / "images" / "3-s0.png", run / "image.png")
    (run / "run.json").write_text(json.dumps({"prompt": "p", "termination": "answer", "image": str(run / "image.png"),
                                              "trajectory": str(run / "trajectory.json")}))
    lone = tmp_path / "research-one"
    lone.mkdir()
    shutil.copy(run / "trajectory.json", lone / "trajectory.json")
    index = RunIndex([run, lone])
    try:
        assert [i.stages for i in index.runs()] == [["research", "generate"], ["research"]]
        assert index.item(0, "3").output == str(run / "image.png")
        assert index.item(1, "3").research.termination == "answer"
    finally:
        index.close()


def test_pretty_printed_jsonl_and_damaged_files(sample, tmp_path):
    pretty = tmp_path / "pretty"
    shutil.copytree(sample["a"] / "images", pretty)
    rows = json.loads((pretty / "results.json").read_text())
    (pretty / "results.json").write_text(json.dumps(rows, indent=2))
    lines = tmp_path / "lines"
    shutil.copytree(sample["a"] / "images", lines)
    (lines / "results.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    damaged = tmp_path / "damaged"
    shutil.copytree(sample["a"], damaged)
    (damaged / "results_eval.json").write_text('[\n{"id": 0, "success": true},\n{"id": 1, "succ')
    index = RunIndex([pretty, lines, damaged])
    try:
        infos = index.runs()
        assert infos[0].items == infos[1].items == 12
        assert infos[2].items == 12 and "results_eval.json" in infos[2].problems[0]  # shown, not a crash
    finally:
        index.close()


def test_the_index_follows_a_running_batch(sample, tmp_path):
    run = tmp_path / "growing"
    shutil.copytree(sample["a"], run)
    index = RunIndex([run], refresh_s=0.0)
    try:
        assert index.run(0).items == 12
        write_sample_run(run, 15, gt_dir=sample["gt"] / "gt", seed=0)
        assert index.run(0).items == 15 and [i.id for i in index.since(0, 13)] == ["13", "14"]
        (tmp_path / "growing" / "rewards.jsonl").write_text('{"step": 1, "reward": 0.5}\n{"step": 2, "reward": 0.6}\n')
        assert index.run(0).rewards == [(1, 0.5), (2, 0.6)] and "train" in index.run(0).stages
    finally:
        index.close()
    assert not index.scratch.exists()


def test_view_export_from_the_command_line(sample, tmp_path):
    result = subprocess.run([sys.executable, "-m", "gensearcher", "view", str(sample["a"]), str(sample["b"]),
                             "--export", str(tmp_path / "site")], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "site" / "index.html")
    item = (tmp_path / "site" / "item-1-4.html").read_text()
    assert "Round 2" in item and 'src="files/' in item and "Item 4: a poster" in item
    assert (tmp_path / "site" / "compare-0-1-flipped.html").is_file()
    missing = subprocess.run([sys.executable, "-m", "gensearcher", "view", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 2 and "not a folder" in missing.stderr and "Traceback" not in missing.stderr
