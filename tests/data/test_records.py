"""The records and the one reader: the reference files load, unknown fields survive, bad input is clear."""

from __future__ import annotations

import json

import pytest

from gensearcher.agent.batch import item_filename, load_tasks
from gensearcher.data import GenerationRow, JudgedRow, ResearchRow, Task, read_records, read_rows
from gensearcher.errors import UserError


@pytest.mark.parametrize("text", [
    '{\n  "id": 7,\n  "prompt": "one task, pretty-printed"\n}\n',
    '[{"id": 7, "prompt": "one task, pretty-printed"}]',
    '\ufeff{"id": 7, "prompt": "one task, pretty-printed"}\n\n',
])
def test_one_reader_decides_by_content(tmp_path, text):
    path = tmp_path / "tasks.jsonl"  # the suffix says JSONL; the content decides
    path.write_text(text, encoding="utf-8")
    assert [(t.id, t.prompt) for t in load_tasks(path)] == [(7, "one task, pretty-printed")]


def test_jsonl_and_its_errors_name_the_line(tmp_path):
    path = tmp_path / "tasks.json"
    path.write_text('{"id": "a", "prompt": "x"}\n\n{"prompt": "y"}\n')
    assert [t.id for t in load_tasks(path)] == ["a", 1]  # a missing id is the index among the items
    path.write_text('{"id": "a", "prompt": "x"}\n{"id": "b", "prompt": \n')
    with pytest.raises(UserError, match="line 2 is not valid JSON"):
        read_rows(path)
    path.write_text('[{"id": 1, "prompt": "x"},')
    with pytest.raises(UserError, match="not valid JSON"):
        read_rows(path)


def test_null_ids_and_blank_prompts_are_errors(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('[{"id": null, "prompt": "x"}]')
    with pytest.raises(UserError, match="item 0: id is null"):
        load_tasks(path)
    path.write_text('[{"id": 1, "prompt": ""}]')
    with pytest.raises(UserError, match="item 0: prompt"):
        load_tasks(path)


def test_rows_keep_unknown_fields_and_read_legacy_names(tmp_path):
    research = {"id": 5, "prompt": "p", "meta": {"category": "film", "source": "kg-v2"}, "termination": "answer",
                "gen_prompt": "g", "reference_images": [{"img_id": "IMG_001", "note": "n", "local_path": "r.jpg",
                                                         "url": None, "title": "t", "extra": 1}],
                "gen_image": "gt/5.png", "trajectory_messages": [{"role": "user", "content": "p", "images": []}],
                "elapsed": 3.5}
    row = ResearchRow.model_validate(research)
    assert row.gt_image == "gt/5.png" and row.meta.category == "film"
    dumped = row.to_json()
    assert dumped["elapsed"] == 3.5 and dumped["meta"]["source"] == "kg-v2" and dumped["reference_images"][0]["extra"] == 1
    assert "gen_image" not in dumped and dumped["gt_image"] == "gt/5.png"
    generation = {"id": 5, "prompt": "p", "gen_prompt": "g", "meta": {}, "gt_image": "/x.png", "used_prompt": "g",
                  "used_images": [], "output_path": "/o.png", "success": True, "suffix": "qwen"}
    assert GenerationRow.model_validate(generation).to_json() == generation
    judged = {**generation, "eval_success": True, "scores": {"rationale": "r", "faithfulness": 1, "visual_correctness": 0.7,
                                                            "text_accuracy": 0.5, "aesthetics": 1, "overall": 0.78,
                                                            "text_accuracy_na": True}}
    assert JudgedRow.model_validate(judged).to_json() == judged


def test_rows_without_ids_get_their_index_and_summaries_are_skipped(tmp_path):
    path = tmp_path / "results_eval.json"
    path.write_text(json.dumps([{"success": True, "prompt": "a"}, {"id": "x", "success": False},
                                {"summary_type": "overall_avg", "avg_scores": {}, "count": 0}]))
    rows = read_records(path, JudgedRow, skip=lambda row: "summary_type" in row)
    assert [row.id for row in rows] == [0, "x"]


def test_explanations_are_never_written(tmp_path):
    task = Task(id=1, prompt="a candle in space", explanation="SECRET-GUIDE")
    assert "SECRET-GUIDE" not in task.model_dump_json() and "explanation" not in task.to_json()


def test_file_names_are_different_for_different_ids():
    ids = ["t.1", "t.2", "t", "a b", "a_b", "a_b-7dbde93504", "../../etc/passwd", "..", ".hidden", "x" * 200,
           "x" * 201, "é", "e", "IMG 1", 12, "12.5", "a/b", "a\\b", "a_b~" + "0" * 16]
    names = [item_filename(value, ".png") for value in ids]
    assert len(set(names)) == len(ids), names
    for name in names:
        assert "/" not in name and "\\" not in name and not name.startswith(".") and len(name) < 120
    assert item_filename("t.1", ".png") == "t.1.png" and item_filename(12, ".json") == "12.json"


def test_jsonl_keeps_unicode_line_separators_inside_strings(tmp_path):
    path = tmp_path / "kg.jsonl"
    path.write_text('{"id": 1, "prompt": "Poster with the line \u2028 break"}\r\n{"id": 2, "prompt": "b\u0085c"}\n',
                    encoding="utf-8")
    assert [t.prompt for t in load_tasks(path)] == ["Poster with the line \u2028 break", "b\u0085c"]


def test_paths_climb_only_along_the_input_files_own_folders(tmp_path, monkeypatch):
    from gensearcher.data import PathNotFound, resolve_path
    from tests.conftest import make_image

    # the reference's layout: rllm/eval_output/test/results.json names eval_output/test/ref_images/x.jpg
    results = tmp_path / "rllm" / "eval_output" / "test" / "results.json"
    make_image(results.parent / "ref_images" / "x.jpg")
    results.write_text("[]")
    assert resolve_path("eval_output/test/ref_images/x.jpg", results) == results.parent / "ref_images" / "x.jpg"
    # an unrelated images/1.png two folders up is not picked up for a run's images/1.png
    make_image(tmp_path / "images" / "1.png")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(PathNotFound, match="not found relative to the input file's folder"):
        resolve_path("images/1.png", tmp_path / "proj" / "run" / "results.json")


def test_a_linked_input_file_resolves_against_the_folder_it_was_named_in(tmp_path):
    from gensearcher.data import resolve_path
    from tests.conftest import make_image

    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "bench.json").write_text("[]")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "bench.json").symlink_to(tmp_path / "real" / "bench.json")
    make_image(tmp_path / "work" / "gt" / "1.png")
    assert resolve_path("gt/1.png", tmp_path / "work" / "bench.json") == tmp_path / "work" / "gt" / "1.png"


def test_a_late_background_rewrite_never_puts_an_older_file_back(tmp_path):
    """The race a kill can meet: a rewrite's snapshot is taken, the final write lands, then the older
    rewrite's thread gets to run. The older one must be dropped."""
    from gensearcher.data import ThrottledWriter, json_array

    path = tmp_path / "results.json"
    writer = ThrottledWriter(path, ["a", "b"], json_array)
    writer.put("a", '{"id": "a"}')
    late = writer._snapshot()  # the background rewrite's snapshot, its thread not yet run
    writer.put("b", '{"id": "b"}')
    writer.flush_sync()  # the final write after the kill
    writer._write(late)  # the late thread
    assert [row["id"] for row in json.loads(path.read_text())] == ["a", "b"]


async def test_batch_summaries_are_current_in_every_write(tmp_path):
    """Each write's summary rows cover exactly the item rows in that write (the row is recorded first)."""
    import asyncio

    from gensearcher.data import ThrottledWriter, json_array
    from gensearcher.data.io import run_batch

    done: dict[str, Task] = {}
    seen: list[list[str]] = []

    def render(rows):
        seen.append(rows)
        return json_array(rows)

    writer = ThrottledWriter(tmp_path / "out.json", [str(i) for i in range(40)], render, interval=0.0,
                             tail=lambda: [json.dumps({"summary_type": "count", "count": len(done)})])

    async def work(i):
        await asyncio.sleep(0.001 * (i % 3))
        return Task(id=i, prompt=f"p{i}")

    progress = []
    await run_batch(list(range(40)), work, writer, concurrency=4,
                    record=lambda task: done.__setitem__(str(task.id), task),
                    on_item=lambda task, n, total: progress.append((n, total)), finished=2, total=42)
    assert len(seen) > 2
    for rows in seen:
        assert json.loads(rows[-1])["count"] == len(rows) - 1
    assert [n for n, _ in progress] == list(range(3, 43)) and {t for _, t in progress} == {42}
