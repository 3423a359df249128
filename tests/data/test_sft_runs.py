"""Our trajectories as SFT rows (with judged rejection sampling), and the RL prompt import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gensearcher.agent import BatchRunner, Task
from gensearcher.agent.trajectory import load_trajectory
from gensearcher.errors import UserError
from gensearcher.testing import ScriptedPolicyServer
from gensearcher.train.dataset import ImageStore, SFTManifest, read_dataset, rows_from_runs, write_dataset
from gensearcher.train.rl_data import import_rl, read_rl
from tests.conftest import make_image
from tests.helpers import answer, call


@pytest.fixture
async def run_dir(make_agent, tmp_path):
    script = {f"poster {i}": [call("image_search", query="champion", top_k=2), answer(f"grounded {i}", "IMG_002")]
              for i in range(3)}
    script["poster 3"] = [call("search", queries=["nothing at all"]), "no tags at all", "still none"]
    script["poster 4"] = ["a reply without tags", answer("recovered after feedback")]
    with ScriptedPolicyServer(script) as server:
        agent = make_agent(server, max_llm_calls=2)
        await BatchRunner(agent, tmp_path / "run", concurrency=2).run(
            [Task(id=i, prompt=f"poster {i}") for i in range(5)])
    return tmp_path / "run"


def judged_file(path: Path, scores: dict[int, float | None]) -> Path:
    rows = [{"id": i, "success": True, "eval_success": s is not None, "scores": None if s is None else {"overall": s}}
            for i, s in scores.items()]
    rows.append({"summary_type": "overall_avg", "avg_scores": {"overall": 0.5}, "count": 3})
    path.write_text(json.dumps(rows))
    return path


async def test_answered_trajectories_become_rows_with_the_exact_images(run_dir, tmp_path):
    store = ImageStore(tmp_path / "data")
    rows, skipped = rows_from_runs([run_dir], store)
    write_dataset(store, rows, SFTManifest(sources=[str(run_dir)], skipped=skipped))
    assert sorted(row.task_id for row in rows) == ["0", "1", "2"]
    assert [(s.index, s.reason) for s in skipped] == [
        ("3.json", "termination is 'no_answer', not 'answer'"),
        ("4.json", ("round 1 was not usable (the reply holds neither a <tool_call> nor an <answer>); "
                    "--keep-invalid-turns keeps such runs"))]
    kept, _ = rows_from_runs([run_dir], ImageStore(tmp_path / "data-all"), keep_invalid_turns=True)
    assert sorted(row.task_id for row in kept) == ["0", "1", "2", "4"]
    _, stored = read_dataset(tmp_path / "data")
    trajectory = load_trajectory(run_dir / "trajectories" / "0.json")
    row = next(r for r in stored if r.task_id == "0")
    assert [m.text for m in row.messages] == [m.text for m in trajectory.messages]
    seen = [image for message in trajectory.messages for image in message.images]
    assert seen and [i.sha256 for i in row.images] == [i.sha256 for i in seen]
    for mine, theirs in zip(row.images, seen, strict=True):
        assert Path(mine.path).read_bytes() == Path(theirs.path).read_bytes()  # byte for byte what was shown


async def test_judged_rows_keep_only_the_best(run_dir, tmp_path):
    judged = judged_file(tmp_path / "results_eval.json", {0: 0.9, 1: 0.4, 3: 1.0})
    rows, skipped = rows_from_runs([run_dir], ImageStore(tmp_path / "data"), judged=[judged], min_score=0.5)
    assert [(row.task_id, row.score) for row in rows] == [("0", 0.9)]
    reasons = {s.index: s.reason for s in skipped}
    assert reasons["1.json"] == "score 0.4 below --min-score 0.5"
    assert reasons["2.json"].startswith("not judged")
    assert "no_answer" in reasons["3.json"]  # a high score never rescues a run without an answer


async def test_a_changed_image_is_reported_not_trained(run_dir, tmp_path):
    trajectory = load_trajectory(run_dir / "trajectories" / "0.json")
    shown = next(image for message in trajectory.messages for image in message.images)
    make_image(Path(shown.path), color=(1, 2, 3))
    rows, skipped = rows_from_runs([run_dir], ImageStore(tmp_path / "data"))
    assert "0" not in [row.task_id for row in rows]
    assert any("changed since the run" in s.reason for s in skipped)


def test_min_score_needs_judgements(tmp_path):
    with pytest.raises(UserError, match="--judged"):
        rows_from_runs([tmp_path], ImageStore(tmp_path / "data"), min_score=0.5)


def test_rl_import_reports_bad_items_and_splits_with_a_seed(tmp_path):
    make_image(tmp_path / "gt" / "ok.png")
    items = [{"id": f"a{i}", "prompt": f"prompt {i}", "gt_image": "gt/ok.png", "extra": "ignored"} for i in range(1000)]
    items += [{"id": None, "prompt": "x", "gt_image": "gt/ok.png"}, {"id": "e", "prompt": "  ", "gt_image": "gt/ok.png"},
              {"id": "m", "prompt": "x", "gt_image": "gt/missing.png"}, {"id": "a3", "prompt": "dup", "gt_image": "gt/ok.png"},
              {"id": "n", "prompt": "x"}]
    (tmp_path / "rl_data.json").write_text(json.dumps(items))
    manifest = import_rl(tmp_path / "rl_data.json", tmp_path / "rl", test_ratio=0.01, seed=7)
    assert (manifest.train, manifest.test) == (990, 10)
    assert [(s.index, s.reason.split(" (")[0].split(":")[0]) for s in manifest.skipped] == [
        (1000, "no id"), (1001, "empty prompt"), (1002, "gt_image 'gt/missing.png' not found relative to the input file's folder"),
        (1003, "duplicate id 'a3'"), (1004, "no gt_image")]
    _, splits = read_rl(tmp_path / "rl")
    assert {t.id for t in splits["train"]} | {t.id for t in splits["test"]} == {f"a{i}" for i in range(1000)}
    assert all(Path(t.gt_image).is_absolute() and "extra" not in t.to_json() for t in splits["test"])
    again = import_rl(tmp_path / "rl_data.json", tmp_path / "rl2", test_ratio=0.01, seed=7)
    assert again.test == 10
    assert (tmp_path / "rl2" / "test.jsonl").read_text() == (tmp_path / "rl" / "test.jsonl").read_text()
    with pytest.raises(UserError, match="already holds a split"):
        import_rl(tmp_path / "rl_data.json", tmp_path / "rl", seed=7)
