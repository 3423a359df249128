"""`gensearcher generate` over research results, with the tiny diffusers pipelines in process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from tests.conftest import make_image

SMALL = {"GENSEARCHER_GENERATOR_EDIT_CONDITION_PIXELS": "4096", "GENSEARCHER_GENERATOR_EDIT_VAE_PIXELS": "4096",
         "GENSEARCHER_GENERATOR_STEPS": "2", "GENSEARCHER_GENERATOR_WIDTH": "64", "GENSEARCHER_GENERATOR_HEIGHT": "64"}


def research_results(tmp_path):
    """A research results.json as the agent writes it (one reference relative to the file)."""
    make_image(tmp_path / "research" / "images" / "a.png", color=(250, 0, 0))
    make_image(tmp_path / "research" / "images" / "b.png", color=(0, 250, 0))
    rows = [
        {"id": 1, "prompt": "original one", "meta": {"category": "sports"}, "termination": "answer",
         "gen_prompt": "the runner of the first reference image", "gt_image": "gt/1.png",
         "reference_images": [{"img_id": "IMG_001", "local_path": "images/a.png"},
                              {"img_id": "IMG_002", "local_path": str(tmp_path / "research" / "images" / "b.png")}]},
        {"id": "two", "prompt": "original two", "meta": {}, "termination": "answer", "gen_prompt": "a plain poster",
         "reference_images": []},
        {"id": 3, "prompt": "original three", "meta": {}, "termination": "error", "gen_prompt": "", "reference_images": []},
        {"id": 4, "prompt": "original four", "meta": {}, "termination": "answer", "gen_prompt": "the trophy",
         "reference_images": [{"img_id": "IMG_009", "local_path": "images/gone.png"}]},
    ]
    path = tmp_path / "research" / "results.json"
    path.write_text(json.dumps(rows))
    return path


def gensearcher(*args, cwd, text_model, edit_model, extra_env=None):
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "GENSEARCHER_GENERATOR_MODEL": str(text_model),
           "GENSEARCHER_GENERATOR_EDIT_MODEL": str(edit_model), **SMALL, **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "gensearcher", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_generate_grounded_records_failures_and_resumes(tmp_path, tiny_text_model, tiny_edit_model):
    source = research_results(tmp_path)
    first = gensearcher("generate", "--input", str(source), "--out", "images", "--concurrency", "2", cwd=tmp_path,
                        text_model=tiny_text_model, edit_model=tiny_edit_model)
    assert first.returncode == 1, first.stderr  # two items fail, and the command says so
    rows = json.loads((tmp_path / "images" / "results.json").read_text())
    by_id = {row["id"]: row for row in rows}
    assert list(by_id) == [1, "two", 3, 4]
    one = by_id[1]
    assert one["success"] and one["used_prompt"] == "the runner of the first reference image"
    assert one["used_images"] == [str(tmp_path / "research" / "images" / "a.png"), str(tmp_path / "research" / "images" / "b.png")]
    assert one["gt_image"] == str(tmp_path / "research" / "gt" / "1.png") and one["meta"] == {"category": "sports"}
    with Image.open(one["output_path"]) as image:
        assert image.size == (64, 64) and one["parameters"]["num_inference_steps"] == 2
    assert one["parameters"]["guidance_scale"] == 1.0  # the edit defaults, with references
    assert by_id["two"]["success"] and by_id["two"]["used_images"] == [] and "guidance_scale" not in by_id["two"]["parameters"]
    assert not by_id[3]["success"] and "no grounded prompt" in by_id[3]["error"]
    assert not by_id[4]["success"] and "IMG_009 'images/gone.png' not found relative to" in by_id[4]["error"]  # never a silent text-only fall-back
    again = gensearcher("generate", "--input", str(source), "--out", "images", "--resume", cwd=tmp_path,
                        text_model=tiny_text_model, edit_model=tiny_edit_model)
    assert json.loads(again.stdout)["skipped"] == 2


@pytest.mark.parametrize("flag, expected", [("--original-prompt", "original one"), ("--text-only", "the runner of the first reference image")])
def test_baseline_and_text_only_modes(tmp_path, tiny_text_model, tiny_edit_model, flag, expected):
    source = research_results(tmp_path)
    result = gensearcher("generate", "--input", str(source), "--out", "out", flag, cwd=tmp_path,
                         text_model=tiny_text_model, edit_model=tiny_edit_model,
                         extra_env={"GENSEARCHER_MAX_REFS": "5"})
    rows = {row["id"]: row for row in json.loads((tmp_path / "out" / "results.json").read_text())}
    assert rows[1]["used_prompt"] == expected and rows[1]["used_images"] == [] and rows[1]["success"], result.stderr


def test_generator_configuration_errors_exit_2(tmp_path):
    source = research_results(tmp_path)
    for env, message in (({"GENSEARCHER_GENERATOR": "openai"}, "GENSEARCHER_GENERATOR_API_KEY is not set"),
                         ({"GENSEARCHER_GENERATOR": "http"}, "QWEN_EDIT_APP_URL")):
        result = subprocess.run([sys.executable, "-m", "gensearcher", "generate", "--input", str(source), "--out", "x"],
                                capture_output=True, text=True, cwd=tmp_path, env={"PATH": "", **env}, timeout=60)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
