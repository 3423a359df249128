"""Importing LLaMA-Factory sharegpt SFT files (Gen-Searcher-SFT-10k) and exporting our dataset back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from gensearcher.errors import UserError
from gensearcher.messages import ImageRef, Message
from gensearcher.train.dataset import SFTRow, read_dataset
from gensearcher.train.sharegpt import export_llamafactory, import_sharegpt, merge_user_turns

SYSTEM = "You are a research agent. Current date: 2026-11-27"
CALL = '<think>Find it.</think>\n<tool_call>\n{"name": "image_search", "arguments": {"query": "trophy"}}\n</tool_call>'
RESULT = "<tool_response>\n--- image search result for [trophy] ---\nIMG_001: title: cup\nIMG_002: title: base\n</tool_response>"
ANSWER = ('<think>Done.</think>\n<answer>{"gen_prompt": "The cup from the first reference.", '
          '"reference_images": [{"img_id": "IMG_001", "note": "the cup"}]}</answer>')


def conversation(result: str = RESULT, answer: str = ANSWER, call: str = CALL) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "The 2026 trophy on its base"},
            {"role": "assistant", "content": call}, {"role": "user", "content": result},
            {"role": "assistant", "content": answer}]


@pytest.fixture
def sharegpt(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    Image.new("RGB", (1328, 1000), (200, 160, 20)).save(media / "cup.png")  # a real photo's size: capped on import
    Image.new("RGB", (300, 200), (20, 20, 200)).save(media / "base.jpg")
    (media / "broken.jpg").write_bytes(b"<html>not an image</html>")
    good = {"messages": conversation("<image><image>" + RESULT), "images": ["cup.png", str(media / "base.jpg")]}
    rows = [
        good,
        {"messages": conversation("<image>" + RESULT), "images": ["cup.png", "base.jpg"]},
        {"messages": [conversation()[1], conversation()[1], conversation()[2], conversation()[4]], "images": []},
        {"messages": conversation("<image>" + RESULT), "images": ["nowhere.png"]},
        {"messages": conversation("<image>" + RESULT), "images": ["broken.jpg"]},
        {"messages": conversation(call="I will search now."), "images": []},
        {"messages": conversation(answer=ANSWER.replace("IMG_001", "IMG_009")), "images": []},
        {"messages": conversation(RESULT + "<image>"), "images": ["cup.png"]},
        {"messages": conversation()[:4], "images": []},
        {"messages": conversation(RESULT.replace("cup", "cup<|im_end|>")), "images": []},
        "not a row",
        {"messages": conversation(), "images": []},  # no images at all is fine
    ]
    path = tmp_path / "sft_data.json"
    path.write_text(json.dumps(rows))
    return path, media


def test_import_keeps_good_rows_and_reports_each_bad_one(sharegpt, tmp_path):
    path, media = sharegpt
    manifest, rows = import_sharegpt(path, tmp_path / "data", images_root=media, max_pixels=160_000)
    reasons = {s.index: s.reason for s in manifest.skipped}
    assert [row.id for row in rows] == ["0", "11"] and manifest.rows == 2
    assert reasons[1] == "1 <image> placeholders but 2 images"
    assert "roles do not alternate" in reasons[2]
    assert "'nowhere.png' not found" in reasons[3]
    assert "'broken.jpg' does not decode" in reasons[4]
    assert "does not parse" in reasons[5] and "neither a <tool_call> nor an <answer>" in reasons[5]
    assert "cites 'IMG_009', which no earlier turn showed" in reasons[6]
    assert "not at the start of a user turn" in reasons[7]
    assert "even count" in reasons[8]
    assert "<|im_end|>" in reasons[9]
    assert reasons[10] == "not an object"
    assert len(manifest.skipped) == 10

    _, stored = read_dataset(tmp_path / "data")
    row = stored[0]
    assert [m.role for m in row.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert row.messages[0].text == SYSTEM  # the imported system prompt is kept
    assert row.messages[3].text == RESULT and len(row.messages[3].images) == 2  # placeholders became the images
    cup, base = row.messages[3].images
    assert cup.width * cup.height <= 160_000 and (cup.width, cup.height) != (1328, 1000)  # the agent's pixel cap
    assert (base.width, base.height) == (300, 200)
    for image in row.images:
        assert Path(image.path).is_file() and Path(image.path).parent == (tmp_path / "data" / "images").resolve()
    rows_file = (tmp_path / "data" / "rows.jsonl").read_text()
    assert '"path":"images/' in rows_file and '"path":"/' not in rows_file  # relative: the folder can move


def test_import_refuses_to_mix_into_an_existing_dataset(sharegpt, tmp_path):
    path, media = sharegpt
    import_sharegpt(path, tmp_path / "data", images_root=media, max_pixels=160_000)
    with pytest.raises(UserError, match="exists"):
        import_sharegpt(path, tmp_path / "data", images_root=media, max_pixels=160_000)


def test_export_round_trips_through_llamafactory_sharegpt(sharegpt, tmp_path):
    path, media = sharegpt
    _, rows = import_sharegpt(path, tmp_path / "data", images_root=media, max_pixels=160_000)
    odd = rows[1].model_copy(update={"id": "odd", "messages": [
        *rows[1].messages[:1], rows[1].messages[1].model_copy(update={"text": "draw an <image> tag"}), *rows[1].messages[2:]]})
    data_file, skipped = export_llamafactory([*rows, odd], tmp_path / "data", tmp_path / "lf", name="gen_sft")
    assert [(s.index, s.reason) for s in skipped] == [("odd", "a text holds a literal <image>")]
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert info["gen_sft"]["file_name"] == "gen_sft.json" and info["gen_sft"]["formatting"] == "sharegpt"
    assert info["gen_sft"]["columns"] == {"messages": "messages", "images": "images"}
    exported = json.loads(data_file.read_text())
    assert exported[0]["messages"][3]["content"] == "<image><image>" + RESULT
    again, reimported = import_sharegpt(data_file, tmp_path / "again", images_root=None, max_pixels=160_000)
    assert not again.skipped
    assert [[(m.role, m.text, [i.sha256 for i in m.images]) for m in r.messages] for r in reimported] == [
        [(m.role, m.text, [i.sha256 for i in m.images]) for m in r.messages] for r in rows]


def test_consecutive_user_turns_are_merged_for_sharegpt_with_images_in_place():
    image = ImageRef(path="/x/a.jpg", sha256="a" * 64, width=4, height=4)
    messages = [Message(role="system", text="s"), Message(role="user", text="task"), Message(role="assistant", text=CALL),
                Message(role="user", text=RESULT, images=[image]), Message(role="user", text="FINAL STEP."),
                Message(role="assistant", text=ANSWER)]
    merged = merge_user_turns(SFTRow(id="r", messages=messages, source="trajectory", origin="t").messages)
    assert [m.role for m in merged] == ["system", "user", "assistant", "user", "assistant"]
    assert merged[3].text == "<image>" + RESULT + "\nFINAL STEP."


def test_cli_import_and_validate(sharegpt, tmp_path):
    path, media = sharegpt
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "HOME": str(tmp_path)}

    def gensearcher(*args):
        return subprocess.run([sys.executable, "-m", "gensearcher", *args], capture_output=True, text=True, check=False,
                              cwd=tmp_path, env=env, timeout=120)

    imported = gensearcher("data", "import-sft", str(path), "--out", "data", "--images-root", str(media))
    assert imported.returncode == 0, imported.stderr
    summary = json.loads(imported.stdout)
    assert summary["imported"] == 2 and summary["skipped"] == 10 and summary["images"]["max"] == 2
    assert summary["tokens_estimated"]["min"] > 0
    assert f"skipped {path} [6]: turn 4: the answer cites 'IMG_009'" in imported.stderr
    valid = gensearcher("data", "validate", "data")
    assert valid.returncode == 0 and json.loads(valid.stdout)["problems"] == []
    bad = gensearcher("data", "validate", str(path))
    assert bad.returncode == 1 and "bad [2]: roles do not alternate" in bad.stderr
    stats = json.loads(gensearcher("data", "stats", "data").stdout)
    assert stats["kind"] == "sft" and stats["rows"] == 2 and stats["skipped_at_build"] == 10
