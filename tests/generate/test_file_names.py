"""Ids that look alike never share an output file: `t.1` and `t.2`, `a b` and its slug."""

from __future__ import annotations

import hashlib
import io
import json

from PIL import Image

from gensearcher.generate.base import GenerationRequest, GenerationResult
from gensearcher.generate.batch import GenerateRunner, load_research_results


class ColourOfThePrompt:
    """A generator whose picture is a colour derived from the prompt, so every item's image differs."""

    name = "colour"
    max_references = 0

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        digest = hashlib.sha256(request.prompt.encode()).digest()
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32), tuple(digest[:3])).save(buffer, format="PNG")
        return GenerationResult(image_png=buffer.getvalue(), width=32, height=32, backend=self.name)

    async def aclose(self) -> None:
        pass


async def test_lookalike_ids_get_their_own_images(tmp_path):
    ids = ["t.1", "t.2", "t", "a b", "a_b", "a_b~" + "0" * 16]
    rows = [{"id": value, "prompt": f"prompt {value}", "termination": "answer", "gen_prompt": f"picture {value}"}
            for value in ids]
    source = tmp_path / "results.json"
    source.write_text(json.dumps(rows))
    summary = await GenerateRunner(ColourOfThePrompt(), tmp_path / "out", mode="text_only").run(
        load_research_results(source), source)
    assert summary.succeeded == len(ids)
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    paths = [row["output_path"] for row in written]
    assert len(set(paths)) == len(ids)
    colours = set()
    for path in paths:
        with Image.open(path) as image:
            colours.add(image.getpixel((0, 0)))
    assert len(colours) == len(ids)  # no image overwrote another


async def test_generation_keeps_the_research_rows_unknown_fields(tmp_path):
    rows = [{"id": 1, "prompt": "p", "termination": "answer", "gen_prompt": "g", "source": "kg-v2",
             "trajectory": "trajectories/1.json", "meta": {"category": "film", "note": "kept"}}]
    source = tmp_path / "research" / "results.json"
    source.parent.mkdir()
    source.write_text(json.dumps(rows))
    await GenerateRunner(ColourOfThePrompt(), tmp_path / "out", mode="text_only").run(load_research_results(source), source)
    row = json.loads((tmp_path / "out" / "results.json").read_text())[0]
    assert row["source"] == "kg-v2" and row["meta"] == {"category": "film", "note": "kept"}
    assert row["trajectory"] == str(tmp_path / "research" / "trajectories" / "1.json")


async def test_a_ten_thousand_row_batch_is_complete_ordered_and_resumes(tmp_path):
    """A real batch size: every row written once, in input order, and a resume renders nothing again."""
    size = 10_000
    rows = [{"id": f"k{i}", "prompt": f"prompt {i}", "termination": "answer", "gen_prompt": f"picture {i}",
             "meta": {"category": "sports"}} for i in range(size)]
    source = tmp_path / "results.json"
    source.write_text("\n".join(json.dumps(row) for row in rows))  # JSONL, as large runs are often kept
    research = load_research_results(source)
    summary = await GenerateRunner(ColourOfThePrompt(), tmp_path / "out", mode="text_only", concurrency=64).run(
        research, source)
    assert summary.succeeded == size, summary
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [row["id"] for row in written] == [row["id"] for row in rows]
    assert all(row["success"] and row["meta"] == {"category": "sports"} for row in written)
    again = await GenerateRunner(ColourOfThePrompt(), tmp_path / "out", mode="text_only", resume=True).run(
        research, source)
    assert again.skipped == size and again.succeeded == size
