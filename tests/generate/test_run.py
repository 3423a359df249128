"""`gensearcher run`: research then generation in one command, as a real process."""

import json
import os
import subprocess
import sys

from PIL import Image

from gensearcher.testing import ScriptedPolicyServer
from tests.conftest import make_image
from tests.helpers import answer, call

PROMPT = "The podium of the 2026 race"


def test_run_writes_image_trajectory_and_run_json(tmp_path, tiny_text_model, tiny_edit_model):
    corpus = tmp_path / "corpus"
    (corpus / "race.md").parent.mkdir(parents=True)
    (corpus / "race.md").write_text("# Race 2026\nThe podium was green.\n")
    make_image(corpus / "podium.png", color=(0, 200, 0))
    script = {PROMPT: [call("image_search", query="podium"), answer("The podium of the first reference image.", "IMG_001")]}
    with ScriptedPolicyServer(script) as server:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
               **{key: os.environ[key] for key in ("PYTHONPATH",) if key in os.environ},  # a worktree's sources
               "GENSEARCHER_POLICY_BASE_URL": server.base_url, "GENSEARCHER_POLICY_MODEL": "m",
               "GENSEARCHER_SEARCH_BACKEND": "local", "GENSEARCHER_SEARCH_LOCAL_CORPUS": str(corpus),
               "GENSEARCHER_GENERATOR_MODEL": str(tiny_text_model), "GENSEARCHER_GENERATOR_EDIT_MODEL": str(tiny_edit_model),
               "GENSEARCHER_GENERATOR_EDIT_CONDITION_PIXELS": "4096", "GENSEARCHER_GENERATOR_EDIT_VAE_PIXELS": "4096",
               "GENSEARCHER_GENERATOR_STEPS": "2", "GENSEARCHER_GENERATOR_WIDTH": "64", "GENSEARCHER_GENERATOR_HEIGHT": "64"}
        result = subprocess.run([sys.executable, "-m", "gensearcher", "run", PROMPT, "--out", "out"], capture_output=True,
                                text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["termination"] == "answer" and record["gen_prompt"] == "The podium of the first reference image."
    assert record["reference_images"][0]["img_id"] == "IMG_001"
    assert record["generation"]["backend"] == "diffusers" and record["generation"]["used_images"]
    with Image.open(record["image"]) as image:
        assert image.size == (64, 64)
    assert json.loads((tmp_path / "out" / "trajectory.json").read_text())["termination"] == "answer"
