"""`eval knowgen` end to end (scripted policy, local corpus, tiny diffusers, scripted judge), killed in
each stage and resumed: no finished external call is repeated and the numbers equal an uninterrupted run."""

import json
import re
from collections import Counter
from contextlib import contextmanager

import pytest

from gensearcher.config import load_settings
from gensearcher.evaluate import load_knowgen
from gensearcher.evaluate.pipeline import run_eval
from gensearcher.testing import ScriptedPolicyServer
from tests.conftest import make_image
from tests.helpers import answer, call

CATEGORIES = ["sports", "film", "history", "anime"]


class Killed(Exception):
    pass


def progress_killing(stage_to_kill=None, after=2, finished=None):
    """A progress factory that kills the run once `after` items of `stage_to_kill` are done, noting which."""
    @contextmanager
    def factory(stage, total):
        class Reporter:
            def update(self, row, done, total_):
                if stage == stage_to_kill:
                    if finished is not None:
                        finished.add(str(row.id))
                    if done >= after:
                        raise Killed(stage)
        yield Reporter()
    return factory


@pytest.fixture
def bench(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "notes.md").parent.mkdir(parents=True)
    (corpus / "notes.md").write_text("# Notes\nA podium, a poster, a castle, a hero.\n")
    make_image(corpus / "podium.png", color=(10, 200, 10))
    items = []
    for i, category in enumerate(CATEGORIES):
        make_image(tmp_path / "gt" / f"{i}.png", color=(50 * i, 0, 0))
        items.append({"id": i, "prompt": f"task {i}", "meta": {"category": category, "difficulty": "easy"},
                      "gt_image": f"gt/{i}.png"})
    (tmp_path / "KnowGen-Bench.json").write_text(json.dumps(items))
    return tmp_path, corpus


class Judge:
    def __init__(self):
        self.calls = Counter()

    def __call__(self, body):
        item = re.match(r"Item (\S+)\.", body["messages"][-1]["content"][-1]["text"]).group(1)
        self.calls[item] += 1
        v = 1 if int(item) % 2 else 0.5
        return json.dumps({"rationale": "Constraints: x.", "faithfulness": 1, "visual_correctness": v,
                           "text_accuracy": 0.5, "text_accuracy_na": int(item) == 3, "aesthetics": 0.5})


def settings_for(tmp_path, corpus, policy, judge, cache, tiny_text_model, tiny_edit_model):
    return load_settings({
        "output_dir": str(tmp_path / "outputs"),
        "policy": {"base_url": policy.base_url, "model": "m", "temperature": 0.0},
        "agent": {"date": "2026-11-27"},
        "search": {"backend": "local", "local_corpus": str(corpus)},
        "generator": {"backend": "diffusers", "model": str(tiny_text_model), "edit_model": str(tiny_edit_model),
                      "edit_condition_pixels": 4096, "edit_vae_pixels": 4096, "steps": 2, "width": 64, "height": 64},
        "judge": {"base_url": judge.base_url, "model": "judge", "concurrency": 2},
        "cache": {"dir": str(cache)},
    })


async def test_killed_in_each_stage_then_resumed(bench, tiny_text_model, tiny_edit_model):
    tmp_path, corpus = bench
    items = load_knowgen(tmp_path / "KnowGen-Bench.json")
    script = {f"task {i}": [call("image_search", query="podium"), answer("the podium of the first reference image", "IMG_001")]
              for i in range(4)}
    full_judge, judge = Judge(), Judge()
    with ScriptedPolicyServer(script) as policy, ScriptedPolicyServer(full_judge) as full_judge_server, \
            ScriptedPolicyServer(judge) as judge_server:
        full = settings_for(tmp_path, corpus, policy, full_judge_server, tmp_path / "cache-full", tiny_text_model, tiny_edit_model)
        await run_eval(full, "knowgen", items, tmp_path / "full", baseline=False, research_concurrency=2,
                       generate_concurrency=1, progress=progress_killing())
        policy.requests.clear()
        settings = settings_for(tmp_path, corpus, policy, judge_server, tmp_path / "cache", tiny_text_model, tiny_edit_model)
        finished = {stage: set() for stage in ("research", "generate", "judge")}
        for stage in finished:
            with pytest.raises(Killed):
                await run_eval(settings, "knowgen", items, tmp_path / "run", baseline=False, research_concurrency=1,
                               generate_concurrency=1, progress=progress_killing(stage, after=2, finished=finished[stage]))
        report = await run_eval(settings, "knowgen", items, tmp_path / "run", baseline=False, research_concurrency=1,
                                generate_concurrency=1, progress=progress_killing())
    # What finished before a kill is never asked again. A call in flight at the kill never returned its
    # answer to the run, so it may be sent once more (as after any real kill).
    researched = Counter(request["messages"][1]["content"] for request in policy.requests)
    assert len(researched) == 4 and all(2 <= count <= 3 for count in researched.values())
    assert all(researched[f"task {i}"] == 2 for i in finished["research"])
    assert set(judge.calls) == {"0", "1", "2", "3"} and all(calls <= 2 for calls in judge.calls.values())
    assert all(judge.calls[i] == 1 for i in finished["judge"])
    costs = json.loads((tmp_path / "run" / "costs.json").read_text())
    assert costs["generate"]["rendered_now"] == 0  # generation had finished before the judge-stage kill
    assert costs["judge"]["calls"] + costs["judge"]["cache_hits"] == 2
    full_scores = json.loads((tmp_path / "full" / "scores.json").read_text())
    scores = json.loads((tmp_path / "run" / "scores.json").read_text())
    assert scores["overall"] == full_scores["overall"] and scores["groups"] == full_scores["groups"]
    # v = 0.5 (even ids) or 1 (odd); text applicable except item 3 (N/A); by hand for the science group (0, 2):
    assert scores["groups"]["science_and_knowledge"]["reference"]["k_score"] == round(100 * (0.1 + 0.2 + 0.2 + 0.05), 2)
    assert report["scores"]["reference"]["k_score"] == scores["overall"]["reference"]["k_score"]
    rows = json.loads((tmp_path / "run" / "results_eval.json").read_text())
    assert rows[-1]["summary_type"] == "overall_avg"
    assert {"id", "success", "prompt", "meta", "output_path", "gt_image", "eval_success", "scores"} <= set(rows[0])
    from gensearcher.viewer.export import export_runs  # what the eval command does after run_eval

    export_runs([tmp_path / "run"], tmp_path / "run" / "report")
    html = (tmp_path / "run" / "report" / "items-0.html").read_text()
    assert "task 2" in html and 'data-category="film"' in html and 'src="thumbs/' in html


async def test_baseline_renders_the_original_prompts(bench, tiny_text_model, tiny_edit_model):
    tmp_path, corpus = bench
    items = load_knowgen(tmp_path / "KnowGen-Bench.json")
    judge = Judge()
    with ScriptedPolicyServer({}) as policy, ScriptedPolicyServer(judge) as judge_server:
        settings = settings_for(tmp_path, corpus, policy, judge_server, tmp_path / "cache", tiny_text_model, tiny_edit_model)
        await run_eval(settings, "knowgen", items, tmp_path / "baseline", baseline=True, research_concurrency=1,
                       generate_concurrency=2, progress=progress_killing())
        assert policy.requests == []  # no research at all
    rows = json.loads((tmp_path / "baseline" / "images" / "results.json").read_text())
    assert [row["used_prompt"] for row in rows] == [f"task {i}" for i in range(4)]
    assert all(row["used_images"] == [] for row in rows)
