"""Review: a crash inside a GRPO rollout (a bug in our code, not an outage) excludes that rollout, says
so in its record, and is never taken for a service outage: no pauses, no re-runs, and when it takes
over a step the halt names the crash instead of blaming the generator, judge or search services."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("trl")
pytest.importorskip("torch")

from gensearcher.data import ResearchRow, read_records
from gensearcher.testing.image_apis import KEY, ImageApis
from gensearcher.train.grpo import TrainingHalted
from tests.conftest import make_image
from tests.train.test_grpo import GradedJudge, ScriptedEngine, batch_inputs, tasks_file, trainer_for


class BuggyEngine(ScriptedEngine):
    """The scripted turns, except that a 'bug team' turn comes back as a non-id: decoding it raises
    TypeError inside the rollout's policy (our code), past every PolicyError handler of the agent loop."""

    def _generate(self, batch: list[Any]) -> list[list[int]]:
        out: list[list[Any]] = []
        for request in batch:
            if "bug team" in self.tokenizer.decode(request.ids):
                self.bug_turns = getattr(self, "bug_turns", 0) + 1
                out.append([None])
            else:
                out.extend(super()._generate([request]))
        return out


def buggy(answers: dict[str, list[str]], built: list[BuggyEngine]) -> Any:
    def build(model: Any, processor: Any, sampling: Any, max_batch: int) -> BuggyEngine:
        built.append(BuggyEngine(model, processor, sampling, max_batch, answers=answers))
        return built[-1]
    return build


def test_a_crashing_rollout_is_excluded_as_a_crash_and_its_group_mates_train(tiny_checkpoint, local_web, tmp_path):
    gt = make_image(tmp_path / "gt.png", size=(256, 256))
    tasks = tasks_file(tmp_path, {"A poster of the red team": gt, "A poster of the bug team": gt})
    answers = {"red team": ["A red poster.", "A dark red poster."], "bug team": ["never", "never"]}
    built: list[BuggyEngine] = []
    out = tmp_path / "grpo"
    with ImageApis() as apis:
        generator = {"backend": "openai", "api_key": KEY, "api_base_url": apis.url + "/v1"}
        with trainer_for(tiny_checkpoint, out, local_web, generator, GradedJudge([0.9, 0.2]), answers, tasks,
                         max_excluded_fraction=0.5, outage_retries=1, outage_backoff_s=0.05) as (trainer, _):
            trainer.engine_factory = buggy(answers, built)
            trainer.model.train()
            trainer._generate_and_score_completions(batch_inputs(trainer, 2))
            rewards = [o.reward for o in trainer._last_outcomes]
    assert [r.status for r in rewards[:2]] == ["scored", "scored"]
    assert [(r.status, r.reason) for r in rewards[2:]] == [("excluded", "internal_error")] * 2
    assert all("TypeError" in str(r.detail) for r in rewards[2:])
    rows = read_records(out / "rollouts" / "step-000001" / "results.json", ResearchRow)
    assert [row.model_extra["rollout"]["reward"]["reason"] for row in rows[2:]] == ["internal_error"] * 2


def test_a_crash_in_every_rollout_halts_at_once_naming_the_crash(tiny_checkpoint, local_web, tmp_path):
    gt = make_image(tmp_path / "gt.png", size=(256, 256))
    tasks = tasks_file(tmp_path, {"A poster of the bug team": gt})
    answers = {"bug team": ["never", "never"]}
    built: list[BuggyEngine] = []
    with ImageApis() as apis:
        generator = {"backend": "openai", "api_key": KEY, "api_base_url": apis.url + "/v1"}
        with trainer_for(tiny_checkpoint, tmp_path / "grpo", local_web, generator, GradedJudge([0.5]), answers,
                         tasks, outage_retries=2, outage_backoff_s=0.05) as (trainer, _):
            trainer.engine_factory = buggy(answers, built)
            with pytest.raises(TrainingHalted) as halted:
                trainer._generate_and_score_completions(batch_inputs(trainer, 1))
            attempts = [o.attempts for o in trainer._last_outcomes]
    message = str(halted.value)
    # A bug is not an outage: re-running it after pauses only delays the same traceback.
    assert attempts == [1, 1] and built[0].bug_turns == 2
    assert "internal_error" in message and "crashed" in message and "not answering" not in message
