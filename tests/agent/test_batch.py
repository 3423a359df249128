"""Batch research: formats, failures, resume after an interruption."""

from __future__ import annotations

import asyncio
import json

import pytest

from gensearcher.agent import BatchRunner, load_tasks
from gensearcher.errors import UserError
from gensearcher.testing import Reply, ScriptedPolicyServer
from tests.helpers import answer, call


def knowgen_items(n: int) -> list[dict]:
    return [{"id": i if i % 2 else f"k{i}", "prompt": f"prompt {i}", "meta": {"category": "sports", "difficulty": "easy"},
             "gt_image": f"gt/{i}.png"} for i in range(n)]


def script_for(items: list[dict]) -> dict:
    return {item["prompt"]: [call("image_search", query="champion", top_k=2), answer("grounded " + item["prompt"], "IMG_002")]
            for item in items}


def test_load_tasks_accepts_knowgen_jsonl_and_plain_prompts(tmp_path):
    path = tmp_path / "kg.json"
    path.write_text(json.dumps(knowgen_items(3)))
    tasks = load_tasks(path)
    assert [t.id for t in tasks] == ["k0", 1, "k2"] and tasks[1].meta.category == "sports"
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"id": 7, "prompt": "a", "extra": "kept"}\n\n{"prompt": "b"}\n')
    tasks = load_tasks(jsonl)
    assert [t.id for t in tasks] == [7, 1] and tasks[0].model_extra == {"extra": "kept"}
    plain = tmp_path / "p.json"
    plain.write_text('["first prompt", "second prompt"]')
    assert [(t.id, t.prompt) for t in load_tasks(plain)] == [(0, "first prompt"), (1, "second prompt")]


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "neither a prompt"),
    ('[{"id": 1, "prompt": "a"}, {"id": "1", "prompt": "b"}]', "duplicate id"),
    ('[{"id": 1}]', "item 0: prompt"),
    ("[]", "no tasks"),
    ("{not json", "not valid JSON"),
])
def test_bad_task_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_tasks(path)


async def test_batch_writes_reference_format_and_records_failures(make_agent, tmp_path):
    items = knowgen_items(5)
    script = script_for(items)
    script["prompt 3"] = [Reply(status=500, error="boom", retry_after=0)] * 3  # this item fails
    (tmp_path / "tasks.json").write_text(json.dumps(items))
    seen = []
    with ScriptedPolicyServer(script) as server:
        runner = BatchRunner(make_agent(server), tmp_path / "out", concurrency=3,
                             on_item=lambda row, done, total: seen.append((row.id, done, total)))
        summary = await runner.run(load_tasks(tmp_path / "tasks.json"))
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [row["id"] for row in rows] == ["k0", 1, "k2", 3, "k4"]  # input order, ids as given
    assert summary.terminations == {"answer": 4, "error": 1} and summary.ran == 5
    good = rows[0]
    assert set(good) >= {"id", "prompt", "meta", "termination", "gen_prompt", "reference_images", "gt_image", "trajectory"}
    assert good["gen_prompt"] == "grounded prompt 0"
    assert good["reference_images"][0]["img_id"] == "IMG_002"
    assert set(good["reference_images"][0]) >= {"img_id", "note", "local_path", "url", "title"}
    assert good["meta"] == {"category": "sports", "difficulty": "easy"} and good["gt_image"] == str(tmp_path / "gt" / "0.png")
    assert (tmp_path / "out" / good["trajectory"]).is_file()
    assert rows[3]["termination"] == "error" and "HTTP 500" in rows[3]["error"]
    assert sorted(done for _, done, _ in seen) == [1, 2, 3, 4, 5]


async def test_existing_results_need_resume(make_agent, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.json").write_text("[]")
    with ScriptedPolicyServer({}) as server, pytest.raises(UserError, match="resume that run"):
        await BatchRunner(make_agent(server), tmp_path / "out").run(load_tasks_from(tmp_path, knowgen_items(1)))


def load_tasks_from(tmp_path, items):
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(items))
    return load_tasks(path)


async def test_interrupted_batch_resumes_without_repeating_finished_items(make_agent, tmp_path):
    items = knowgen_items(6)
    tasks = load_tasks_from(tmp_path, items)
    script = script_for(items)

    # An uninterrupted run, for comparison.
    with ScriptedPolicyServer(script) as server:
        await BatchRunner(make_agent(server), tmp_path / "full", concurrency=2).run(tasks)
    full = json.loads((tmp_path / "full" / "results.json").read_text())

    # Kill the batch once three items are finished.
    with ScriptedPolicyServer(script, latency_s=0.02) as server:
        finished = asyncio.Event()
        runner = BatchRunner(make_agent(server), tmp_path / "out", concurrency=2,
                             on_item=lambda row, done, total: finished.set() if done >= 3 else None)
        job = asyncio.create_task(runner.run(tasks))
        await finished.wait()
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
    partial = json.loads((tmp_path / "out" / "results.json").read_text())
    done_ids = {row["id"] for row in partial}
    assert 3 <= len(done_ids) < 6

    with ScriptedPolicyServer(script) as server:
        summary = await BatchRunner(make_agent(server), tmp_path / "out", concurrency=2, resume=True).run(tasks)
        asked = {request["messages"][1]["content"] for request in server.requests}
    # results.json is a view: a trajectory whose file was written as the kill came may not be in it yet,
    # but its file is, so it is not researched again either.
    assert summary.skipped >= len(done_ids) and summary.skipped + summary.ran == 6
    assert asked.isdisjoint({item["prompt"] for item in items if item["id"] in done_ids})
    resumed = json.loads((tmp_path / "out" / "results.json").read_text())

    def comparable(rows):
        return [{k: v for k, v in row.items() if k not in ("trajectory",)} | {
            "reference_images": [r["img_id"] for r in row["reference_images"]]} for row in rows]

    assert comparable(resumed) == comparable(full)


async def test_resume_reruns_items_that_ended_in_error(make_agent, tmp_path):
    items = knowgen_items(2)
    tasks = load_tasks_from(tmp_path, items)
    failing = script_for(items) | {"prompt 1": [Reply(status=503, error="down", retry_after=0)] * 3}
    with ScriptedPolicyServer(failing) as server:
        await BatchRunner(make_agent(server), tmp_path / "out").run(tasks)
    with ScriptedPolicyServer(script_for(items)) as server:
        summary = await BatchRunner(make_agent(server), tmp_path / "out", resume=True).run(tasks)
        asked = {request["messages"][1]["content"] for request in server.requests}
    assert asked == {"prompt 1"} and summary.terminations == {"answer": 2}


def test_unsafe_ids_get_safe_unique_file_names():
    from gensearcher.agent.batch import trajectory_filename

    assert trajectory_filename(12) == "12.json"
    weird = trajectory_filename("../../etc/passwd")
    assert "/" not in weird and weird.endswith(".json") and weird != trajectory_filename("../../etc/passwd2")


async def test_resume_reruns_a_task_whose_prompt_changed(make_agent, tmp_path):
    items = knowgen_items(2)
    tasks = load_tasks_from(tmp_path, items)
    with ScriptedPolicyServer(script_for(items)) as server:
        await BatchRunner(make_agent(server), tmp_path / "out").run(tasks)
    items[1]["prompt"] = "prompt 1, reworded"
    changed = load_tasks_from(tmp_path, items)
    script = script_for(items) | {"prompt 1, reworded": script_for(knowgen_items(2))["prompt 1"]}
    with ScriptedPolicyServer(script) as server:
        summary = await BatchRunner(make_agent(server), tmp_path / "out", resume=True).run(changed)
        asked = {request["messages"][1]["content"] for request in server.requests}
    assert asked == {"prompt 1, reworded"} and summary.skipped == 1
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert rows[1]["prompt"] == "prompt 1, reworded"


async def test_resume_carries_the_current_labels_and_unknown_fields(make_agent, tmp_path):
    items = knowgen_items(2)
    tasks = load_tasks_from(tmp_path, items)
    with ScriptedPolicyServer(script_for(items)) as server:
        await BatchRunner(make_agent(server), tmp_path / "out").run(tasks)
    items[1]["meta"] = {"category": "film", "difficulty": "hard"}  # a corrected benchmark file
    items[1]["source"] = "kg-v2"
    with ScriptedPolicyServer(script_for(items)) as server:
        summary = await BatchRunner(make_agent(server), tmp_path / "out", resume=True).run(load_tasks_from(tmp_path, items))
        assert server.requests == [] and summary.skipped == 2  # the research itself is unchanged
    row = json.loads((tmp_path / "out" / "results.json").read_text())[1]
    assert row["meta"] == {"category": "film", "difficulty": "hard"} and row["source"] == "kg-v2"


async def test_resume_refuses_a_results_file_without_trajectories(make_agent, tmp_path):
    (tmp_path / "ref").mkdir()
    reference = [{"id": "k0", "prompt": "prompt 0", "gen_prompt": "REFERENCE RESULT", "termination": "answer"}]
    (tmp_path / "ref" / "results.json").write_text(json.dumps(reference))
    with ScriptedPolicyServer({}) as server, pytest.raises(UserError, match="no trajectories/ beside it"):
        await BatchRunner(make_agent(server), tmp_path / "ref", resume=True).run(load_tasks_from(tmp_path, knowgen_items(1)))
    assert json.loads((tmp_path / "ref" / "results.json").read_text()) == reference
