"""GRPO end to end on CPU: our agent loop as the rollout, a real generator and judge as the reward.

The policy is a tiny random Qwen3-VL. Where a test needs fixed turns the engine replays scripted replies
as token ids (the model boundary); the rest is real: the agent loop, our tools against the local web,
the generator (our server with a tiny Qwen-Image, or the OpenAI Images stand-in), a scripted
OpenAI-compatible judge, and TRL's scoring, loss and optimizer.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from gensearcher.config import load_settings  # noqa: E402
from gensearcher.data import JudgedRow, ResearchRow, read_records  # noqa: E402
from gensearcher.policy.transformers_local import encode_messages  # noqa: E402
from gensearcher.testing import Reply, ScriptedPolicyServer  # noqa: E402
from gensearcher.testing.image_apis import KEY, ImageApis  # noqa: E402
from gensearcher.train.config import GenGRPOConfig, load_config  # noqa: E402
from gensearcher.train.grpo import GenSearcherGRPOTrainer, TrainingHalted, reward_services, training_settings  # noqa: E402
from gensearcher.train.rollout import RolloutEngine  # noqa: E402
from tests.conftest import make_image  # noqa: E402
from tests.helpers import answer, call  # noqa: E402
from tests.train.conftest import DATE, web_settings  # noqa: E402

JUDGE_KEY = "sk-judge-grpo-0123456789"


def knowgen(v: float) -> str:
    return json.dumps({"rationale": "graded", "faithfulness": v, "visual_correctness": v, "text_accuracy": v,
                       "text_accuracy_na": False, "aesthetics": v})


class ScriptedEngine(RolloutEngine):
    """Replays fixed turns as token ids: rollout k of a prompt searches for `<prompt word> k`, then answers
    with the gen_prompt its prompt's script gives (the k-th entry). Everything around it is the real loop."""

    def __init__(self, *args: Any, answers: dict[str, list[str]]):
        super().__init__(*args)
        self.answers = answers
        self.counter: dict[str, int] = {}

    def _generate(self, batch: list[Any]) -> list[list[int]]:
        out = []
        for request in batch:
            context = self.tokenizer.decode(request.ids)
            key = next(k for k in self.answers if k in context)
            if key == "crash team":
                raise RuntimeError("CUDA out of memory (as a model might fail)")
            turns = context.count("<|im_start|>assistant")
            if turns == 1:
                # A request run again (alone, after its batch failed) keeps its number.
                if not hasattr(request, "number"):
                    request.number = self.counter[key] = self.counter.get(key, -1) + 1
                k = request.number
                text = call("image_search", query=f"{key} {k % len(self.answers[key])}", top_k=1)
            else:
                k = next(i for i in range(len(self.answers[key])) if f'"{key} {i}"' in context)
                text = answer(self.answers[key][k], "IMG_001")
            out.append(self.tokenizer.encode(text + "<|im_end|>", add_special_tokens=False))
        return out


def engine_for(answers: dict[str, list[str]]) -> Any:
    def build(model: Any, processor: Any, sampling: Any, max_batch: int) -> ScriptedEngine:
        return ScriptedEngine(model, processor, sampling, max_batch, answers=answers)
    return build


def grpo_config(out: Path, **fields: Any) -> GenGRPOConfig:
    values = {"output_dir": str(out), "max_steps": 2, "num_generations": 2, "per_device_train_batch_size": 2,
              "gradient_accumulation_steps": 2, "max_completion_length": 3000, "max_turn_tokens": 96,
              "report_to": "none", "learning_rate": 5e-3, "gradient_checkpointing": False, "save_strategy": "no",
              "logging_steps": 1, "bf16": False, "seed": 1, "outage_backoff_s": 0.05, "outage_retries": 1}
    return load_config(None, {**values, **fields}, GenGRPOConfig)


def tasks_file(folder: Path, prompts: dict[str, Path | None]) -> Path:
    rows = [{"id": f"t{i}", "prompt": p, **({"gt_image": str(gt)} if gt else {})} for i, (p, gt) in enumerate(prompts.items())]
    path = folder / "rl.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


@contextlib.contextmanager
def trainer_for(tiny_checkpoint: Path, out: Path, web: Any, generator: dict[str, Any], judge_script: Any,
                answers: dict[str, list[str]], tasks: Path, **fields: Any):
    # The tiny model's context is 4,096 tokens (of a 600-token vocabulary): the short system prompt fits it.
    from datasets import Dataset

    from gensearcher.agent.factory import AgentRecipe
    from gensearcher.train.grpo import rl_tasks
    from gensearcher.train.sft import freeze_vision, load_for_training, lora_config

    with ScriptedPolicyServer(judge_script, model="judge", api_key=JUDGE_KEY) as judge:
        config = grpo_config(out, **fields)
        settings = training_settings(load_settings(web_settings(
            web, agent={"date": DATE, "max_llm_calls": 2}, cache={"dir": str(out / "web-cache")}, generator=generator,
            judge={"base_url": judge.base_url, "model": "judge", "api_key": JUDGE_KEY, "max_retries": 0,
                   "deadline_s": 3, "request_timeout_s": 2})), config)
        model, processor = load_for_training(str(tiny_checkpoint), config)
        if not config.lora:
            freeze_vision(model)
        rows = [{"prompt": [{"role": "user", "content": t.prompt}], "task": t.model_dump_json()} for t in rl_tasks(tasks)]
        trainer = GenSearcherGRPOTrainer(
            model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=processor,
            settings=settings, recipe=AgentRecipe.from_settings(settings, out, system_prompt_file=_short_prompt(out)),
            services=lambda: reward_services(settings, out), engine_factory=engine_for(answers),
            peft_config=lora_config(config))
        try:
            yield trainer, judge
        finally:
            trainer.close()


def batch_inputs(trainer: Any, count: int) -> list[dict[str, Any]]:
    """One generation batch as TRL's sampler makes it: each prompt num_generations times, in a row."""
    dataset = trainer.train_dataset
    return [dict(dataset[i]) for i in range(count) for _ in range(trainer.num_generations)]


@pytest.fixture(scope="module")
def generator_server(tiny_text_model, tiny_edit_model):
    from gensearcher.server import build_app
    from gensearcher.testing import ThreadedUvicorn
    from tests.server.test_server import SMALL, TOKEN, wait_healthy

    settings = load_settings({"generator": SMALL, "server": {"token": TOKEN}})
    http = ThreadedUvicorn(build_app(settings, model=str(tiny_text_model), edit_model=str(tiny_edit_model))).start()
    wait_healthy(http.url)
    yield {"backend": "http", "app_urls": [http.url], "server_token": TOKEN, "steps": 2, "width": 64, "height": 64,
           "max_retries": 0}
    http.stop()


def test_two_steps_on_graded_rewards_change_the_weights_and_write_what_happened(
        tiny_checkpoint, local_web, generator_server, tmp_path):
    gt = make_image(tmp_path / "gt.png", size=(1328, 1328), color=(200, 20, 20))
    # Real sizes: each search hit is a 1328 x 996 photo, the ground truth 1328 px.
    tasks = tasks_file(tmp_path, {"A photo of the red team": gt, "A photo of the blue team": gt})
    grades = iter([0.9, 0.2, 0.6, 0.1, 0.8, 0.3, 0.7, 0.4] * 4)

    def judge(body: dict[str, Any]) -> str:
        return knowgen(next(grades))

    answers = {"photo of the red team": ["A red poster, as the reference.", "A dark red poster."],
               "photo of the blue team": ["A blue poster, as the reference.", "A pale blue poster."]}
    out = tmp_path / "grpo"
    with trainer_for(tiny_checkpoint, out, local_web, generator_server, judge, answers, tasks) as (trainer, server):
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        trainer.train()
        changed = [n for n, p in trainer.model.named_parameters() if p.requires_grad and not torch.equal(before[n], p)]
        history = trainer.state.log_history
    assert trainer.state.global_step == 2 and changed
    assert not any("visual" in n for n in changed)  # the vision tower is frozen
    steps = [entry for entry in history if "reward" in entry]
    assert len(steps) == 2 and all(entry["reward_std"] > 0 and entry["frac_reward_zero_std"] == 0 for entry in steps)
    assert all(entry["rollouts/excluded_fraction"] == 0 and entry["tools/call_frequency"] == 1 for entry in steps)

    step1 = out / "rollouts" / "step-000001"
    research = read_records(step1 / "results.json", ResearchRow)
    judged = read_records(step1 / "results_eval.json", JudgedRow)
    assert len(research) == 4 and len(judged) == 4
    for row in research:
        rollout = row.model_extra["rollout"]
        assert rollout["reward"]["status"] == "scored" and rollout["excluded"] is False
        assert row.termination == "answer" and (step1 / str(row.trajectory)).is_file()
        assert rollout["images"] == 1 and rollout["generated_tokens"] > 0
    assert all(Path(str(row.output_path)).is_file() and row.scores is not None for row in judged)
    from gensearcher.viewer.runs import RunIndex, read_rewards

    index = RunIndex([step1, out])
    try:
        opened = index.runs()
    finally:
        index.close()
    assert (opened[0].items, opened[0].generated, opened[0].judged) == (4, 4, 4)
    assert [step for step, _ in read_rewards(out)] == [1, 2] and "train" in opened[1].stages
    # The step's web exports as the frozen web of a research run (every search and image it used).
    from gensearcher.agent.batch import run_cache_keys
    from gensearcher.web import WebCache

    keys = run_cache_keys(step1)
    cache = WebCache(out / "web-cache")
    try:
        exported, missing = cache.export(keys, tmp_path / "web.tar")
    finally:
        cache.close()
    # (a key whose fetch failed, such as a broken image hit, is listed as used but has nothing to export)
    assert keys and exported > len(missing) and exported + len(missing) == len(keys)
    lines = [json.loads(line) for line in (out / "rewards.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2] and all(line["excluded"] == 0 for line in lines)
    # Each rollout's six-way web searches share one fetch: the second step found them all cached.
    assert server.requests and all(r["messages"][-1]["role"] == "user" for r in server.requests)


class GradedJudge:
    """KnowGen answers graded per task: the n-th judgement of a task gets the n-th grade; `slow` tasks
    answer their `slow_at`-th judgement past the judge's deadline."""

    def __init__(self, grades: list[float], slow: tuple[str, ...] = (), slow_at: int = 2):
        self.grades, self.slow, self.slow_at = grades, slow, slow_at
        self.seen: dict[str, int] = {}

    def __call__(self, body: dict[str, Any]) -> str | Reply:
        text = body["messages"][-1]["content"][-1]["text"]
        task = text.split("Request: ", 1)[1].split("\n", 1)[0]
        n = self.seen[task] = self.seen.get(task, -1) + 1
        if any(word in task for word in self.slow) and n == self.slow_at:
            return Reply(text=knowgen(0.5), delay_s=6)
        return knowgen(self.grades[n % len(self.grades)])


def test_outages_are_excluded_from_the_loss_and_from_their_group_exactly(tiny_checkpoint, local_web, tmp_path):
    gt = make_image(tmp_path / "gt.png", size=(512, 512), color=(0, 200, 0))
    tasks = tasks_file(tmp_path, {"A poster of the green team": gt, "A poster of the gold team": gt,
                                  "A poster of the grey team": gt, "A poster of the lost team": tmp_path / "nowhere.png",
                                  "A poster of the crash team": gt})
    # green: three scored; gold: the generator answers 500 (after its retry) to one answer; grey: the judge is
    # too slow for one judgement; lost: no ground truth on disk; crash: the model itself fails.
    answers = {"green team": ["green one", "green two", "green three"],
               "gold team": ["gold one", "gold two", "boom"],
               "grey team": ["grey one", "grey two", "grey three"],
               "lost team": ["lost one", "lost two", "lost three"], "crash team": ["never"] * 3}
    with ImageApis() as apis:
        generator = {"backend": "openai", "api_key": KEY, "api_base_url": apis.url + "/v1", "max_retries": 1}
        judge = GradedJudge([0.9, 0.5, 0.2], slow=("grey",))
        with trainer_for(tiny_checkpoint, tmp_path / "grpo", local_web, generator, judge, answers, tasks,
                         num_generations=3, per_device_train_batch_size=3, gradient_accumulation_steps=5,
                         max_excluded_fraction=0.6) as (trainer, _):
            trainer.model.train()
            output = trainer._generate_and_score_completions(batch_inputs(trainer, 5))
            rewards = [outcome.reward for outcome in trainer._last_outcomes]
            before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
            trainer.args.max_steps = 1
            trainer.train()  # the step still happens with a quarter of the batch out
            moved = any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters() if p.requires_grad)
    assert [r.status for r in rewards[:3]] == ["scored"] * 3
    assert sorted(str(r.reason) for r in rewards[3:6]) == ["None", "None", "generator_failed"]
    assert sorted(str(r.reason) for r in rewards[6:9]) == ["None", "None", "judge_failed"]
    assert {r.reason for r in rewards[9:12]} == {"missing_ground_truth"}
    assert {r.reason for r in rewards[12:]} == {"policy_backend"}
    excluded = [r.status == "excluded" for r in rewards]
    advantages = output["advantages"].tolist()
    live = (output["completion_mask"] * output["tool_mask"]).sum(-1).tolist()
    for index, is_excluded in enumerate(excluded):
        assert (advantages[index] == 0 and live[index] == 0) if is_excluded else live[index] > 0
    assert int(output["num_items_in_batch"]) == sum(live)
    # Group statistics over the scored members only (the reference counted an excluded rollout as a 0).
    for group in range(3):
        values = [(i, float(rewards[i].reward)) for i in range(3 * group, 3 * group + 3) if not excluded[i]]
        mean = sum(v for _, v in values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for _, v in values) / (len(values) - 1))
        assert std > 0
        for i, value in values:
            assert advantages[i] == pytest.approx((value - mean) / (std + 1e-4), rel=1e-4, abs=1e-6)
    assert trainer.state.global_step == 1 and moved


def test_the_trained_sequence_is_what_the_agent_showed_token_for_token_and_pixel_for_pixel(
        tiny_checkpoint, local_web, tmp_path):
    gt = make_image(tmp_path / "gt.png", size=(1328, 1328))
    tasks = tasks_file(tmp_path, {"A photo of the red team": gt})  # its search hit is a 1328 x 996 photo
    with ImageApis() as apis:
        generator = {"backend": "openai", "api_key": KEY, "api_base_url": apis.url + "/v1"}
        with trainer_for(tiny_checkpoint, tmp_path / "grpo", local_web, generator, GradedJudge([0.9, 0.1]),
                         {"photo of the red team": ["A red poster.", "A dark red poster."]}, tasks) as (trainer, _):
            trainer.model.train()
            output = trainer._generate_and_score_completions(batch_inputs(trainer, 1))
            trajectories = [outcome.trajectory for outcome in trainer._last_outcomes]
            processor = trainer.processing_class
            tokenizer = processor.tokenizer

            def logps(pixels: Any) -> Any:
                ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
                mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
                with torch.no_grad():
                    values, _, _ = trainer._get_per_token_logps_and_entropies(
                        trainer.model, ids, mask, output["completion_ids"].size(1), batch_size=2,
                        pixel_values=pixels, image_grid_thw=output["image_grid_thw"], num_images=output["num_images"],
                        mm_token_type_ids=output["mm_token_type_ids"])
                return values

            plain = logps(output["pixel_values"])
            generator_ = torch.Generator().manual_seed(0)
            perturbed = logps(output["pixel_values"] + torch.randn(output["pixel_values"].shape, generator=generator_))
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for row, trajectory in enumerate(trajectories):
        completion = output["completion_ids"][row].tolist()
        mask = output["tool_mask"][row].tolist()
        live = int(output["completion_mask"][row].sum())
        sampled = [token for step in trajectory.steps for token in step.completion_token_ids or []]
        # The loss sees exactly the tokens the model sampled, in order; everything else the loop wrote.
        assert [t for t, m in zip(completion[:live], mask[:live], strict=True) if m] == sampled
        written = tokenizer.decode([t for t, m in zip(completion[:live], mask[:live], strict=True) if not m])
        assert written.startswith("\n<|im_start|>user") and "--- image search result" in written
        assert written.count("<|im_start|>assistant") == len(trajectory.steps) - 1
        assert image_pad in [t for t, m in zip(completion, mask, strict=True) if not m]
        # Parity: the last turn's context is what inference renders from the same conversation.
        last = max(i for i, m in enumerate(trajectory.messages) if m.role == "assistant")
        rendered = encode_messages(processor, trajectory.messages[:last], add_generation_prompt=True)
        full = output["prompt_ids"][row][output["prompt_mask"][row].bool()].tolist() + completion[:live]
        assert rendered["input_ids"][0].tolist() == full[: rendered["input_ids"].shape[1]]
        assert trajectory.steps[-1].prompt_token_ids == rendered["input_ids"][0].tolist()
        shown = [image for message in trajectory.messages for image in message.images]
        assert len(shown) == 1 and 100_000 < shown[0].width * shown[0].height <= 160_000  # the photo, at the cap
        rows = int(output["image_grid_thw"][row].prod())
        assert torch.equal(rendered["pixel_values"], output["pixel_values"][row * rows:(row + 1) * rows])
        # Pixels reach the training forward: changing them moves the log-probs after the image only.
        first_image = completion.index(image_pad)
        assert torch.equal(plain[row, :first_image], perturbed[row, :first_image])
        after = (plain[row, first_image:live] - perturbed[row, first_image:live]).abs()
        assert after.max() > 1e-4


def test_a_whole_batch_outage_pauses_then_stops_without_an_empty_step(tiny_checkpoint, local_web, tmp_path):
    gt = make_image(tmp_path / "gt.png", size=(256, 256))
    tasks = tasks_file(tmp_path, {"A poster of the red team": gt, "A poster of the blue team": gt})
    with ImageApis() as apis:
        generator = {"backend": "openai", "api_key": KEY, "api_base_url": apis.url + "/v1", "max_retries": 0}
        out = tmp_path / "grpo"
        with trainer_for(tiny_checkpoint, out, local_web, generator, GradedJudge([0.5]),
                         {"red team": ["unavailable"], "blue team": ["unavailable"]}, tasks,
                         outage_retries=2, outage_backoff_s=0.05) as (trainer, judge):
            before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
            with pytest.raises(TrainingHalted) as halted:
                trainer.train()
            unchanged = all(torch.equal(before[n], p) for n, p in trainer.model.named_parameters())
            calls = [r for r in apis.requests if r[0] == "openai.edits"]
    assert "4 of 4 rollouts excluded (generator_failed) after 2 pause(s)" in str(halted.value)
    assert "--resume" in str(halted.value)
    assert trainer.state.global_step == 0 and unchanged and not judge.requests
    assert len(calls) == 4 * 3  # each rollout's answer was rendered again after each pause
    rows = read_records(out / "rollouts" / "step-000001" / "results.json", ResearchRow)
    assert [row.model_extra["rollout"]["attempts"] for row in rows] == [3, 3, 3, 3]
    assert all(row.model_extra["rollout"]["reward"]["reason"] == "generator_failed" for row in rows)


def test_the_trl_internals_we_rely_on_are_still_there():
    """GRPOTrainer is pinned; these are the private names and lines the subclass depends on."""
    import inspect

    import trl
    from trl import GRPOTrainer

    assert trl.__version__ == "1.16.0"
    assert list(inspect.signature(GRPOTrainer._generate).parameters) == ["self", "prompts"]
    assert list(inspect.signature(GRPOTrainer._generate_and_score_completions).parameters) == ["self", "inputs"]
    assert list(inspect.signature(GRPOTrainer._compute_loss).parameters) == ["self", "model", "inputs"]
    score = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    for line in ("images,\n            tool_images,\n        ) = self._generate(prompts)",
                 "if self.tools and any(imgs for imgs in tool_images) and self._is_vlm:",
                 "unscorable_mask = torch.isnan(rewards_per_func).all(dim=1)",
                 'output["tool_mask"] = tool_mask', '"num_items_in_batch": num_items_in_batch'):
        assert line in score, line
    loss = inspect.getsource(GRPOTrainer._compute_loss)
    assert 'mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]' in loss
    assert 'advantages = inputs["advantages"]' in loss
    assert "(per_token_loss.size(0) * self.max_completion_length)" in loss
    generate = inspect.getsource(GRPOTrainer._generate)
    assert "return prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images, tool_images" in generate


def _toml(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


CLI_RECIPE = ("num_generations: 2\nper_device_train_batch_size: 2\ngradient_accumulation_steps: 1\n"
              "max_completion_length: 400\nmax_turn_tokens: 12\nlearning_rate: 0.001\ngradient_checkpointing: false\n"
              "logging_steps: 1\nbf16: false\ndisable_tqdm: true\n")


@contextlib.contextmanager
def command_rig(tmp_path: Path, web: Any, prompts: int, recipe: str, max_llm_calls: int):
    """For `gensearcher train grpo` in a subprocess: rl.jsonl, grpo.yaml and settings.toml in `tmp_path`
    (the local web, the OpenAI Images stand-in, a scripted judge), and the environment to run it with."""
    import os

    gt = make_image(tmp_path / "gt.png", size=(256, 256))
    tasks_file(tmp_path, {f"A poster of team {i}": gt for i in range(prompts)})
    (tmp_path / "grpo.yaml").write_text(CLI_RECIPE + recipe)
    with ImageApis() as apis, ScriptedPolicyServer(GradedJudge([0.5]), model="judge", api_key=JUDGE_KEY) as judge:
        settings = web_settings(web, agent={"date": DATE, "max_llm_calls": max_llm_calls})
        settings.update(generator={"backend": "openai", "api_key": KEY, "api_base_url": apis.url + "/v1"},
                        judge={"base_url": judge.base_url, "model": "judge", "api_key": JUDGE_KEY})
        (tmp_path / "settings.toml").write_text(_toml(settings))
        yield {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
               "OMP_NUM_THREADS": "1"}


def test_the_command_trains_is_killed_and_resumes_from_its_checkpoint(tiny_checkpoint, local_web, tmp_path):
    """`gensearcher train grpo` with the tiny model sampling for itself: kill -9 after the first checkpoint,
    then --resume finishes the run from it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.train.test_closed_loop import gensearcher

    with command_rig(tmp_path, local_web, 2, "report_to: tensorboard\nsave_steps: 1\n", 1) as env:
        args = ["train", "grpo", "--model", str(tiny_checkpoint), "--data", "rl.jsonl", "--out", "out",
                "--config", "grpo.yaml", "--settings", "settings.toml", "--max-steps", "3"]
        first = subprocess.Popen([sys.executable, "-m", "gensearcher", *args], cwd=tmp_path, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 300
        while not (tmp_path / "out" / "checkpoint-1" / "trainer_state.json").is_file():
            assert first.poll() is None, first.stderr.read().decode()[-3000:] if first.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        first.stderr.close()  # type: ignore[union-attr]
        assert not (tmp_path / "out" / "grpo.json").exists()
        resumed = gensearcher(*args, "--resume", cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout)
    record = json.loads((tmp_path / "out" / "grpo.json").read_text())
    assert report["steps"] == 3 and record["resumed_from"].endswith(("checkpoint-1", "checkpoint-2"))
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "chat_template.jinja").is_file()
    steps = [json.loads(line)["step"] for line in (tmp_path / "out" / "rewards.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # a step trained again after the kill replaces its line
    assert list((tmp_path / "out" / "runs").rglob("events.out.tfevents.*"))  # TensorBoard got the metrics
    for step in (1, 2, 3):
        rows = read_records(tmp_path / "out" / "rollouts" / f"step-{step:06d}" / "results.json", ResearchRow)
        assert len(rows) == 2 and all(row.model_extra["rollout"]["reward"]["status"] in ("policy_failure", "scored")
                                      for row in rows)


def test_two_processes_train_together(tiny_checkpoint, local_web, tmp_path):
    """Two ranks under torchrun (DDP over gloo on CPU): each rank runs its own rollouts with the shared
    weights (generation is never a collective), rewards are gathered, and both ranks take the same two steps."""
    import subprocess
    import sys

    recipe = "report_to: none\nsave_strategy: 'no'\nmax_steps: 2\nuse_cpu: true\nddp_backend: gloo\n"
    with command_rig(tmp_path, local_web, 4, recipe, 3) as env:
        run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                              "--master_port", str(_free_port()), "-m", "gensearcher", "train", "grpo",
                              "--model", str(tiny_checkpoint), "--data", "rl.jsonl", "--out", "out",
                              "--config", "grpo.yaml", "--settings", "settings.toml"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    assert json.loads((tmp_path / "out" / "grpo.json").read_text())["steps"] == 2
    for step in (1, 2):
        for rank in (0, 1):
            rows = read_records(tmp_path / "out" / "rollouts" / f"step-{step:06d}" / f"rank-{rank}" / "results.json",
                                ResearchRow)
            assert len(rows) == 2 and all(row.id.startswith(f"p{rank}-") for row in rows)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _short_prompt(out: Path) -> Path:
    from tests.train.conftest import SHORT_PROMPT

    path = out.parent / "short-prompt.md"
    path.write_text(SHORT_PROMPT)
    return path


def test_a_lora_run_trains_only_the_adapter_and_saves_it_merged_and_alone(tiny_checkpoint, local_web, tmp_path):
    from gensearcher.train.sft import save_checkpoint

    gt = make_image(tmp_path / "gt.png", size=(256, 256))
    tasks = tasks_file(tmp_path, {"A poster of the red team": gt})
    out = tmp_path / "grpo"
    with ImageApis() as apis:
        generator = {"backend": "openai", "api_key": KEY, "api_base_url": apis.url + "/v1"}
        with trainer_for(tiny_checkpoint, out, local_web, generator, GradedJudge([0.9, 0.2]),
                         {"red team": ["A red poster.", "A dark red poster."]}, tasks, lora=True, lora_r=4,
                         max_steps=1, gradient_accumulation_steps=1) as (trainer, _):
            named = dict(trainer.model.named_parameters())
            before = {n: p.detach().clone() for n, p in named.items()}
            trainer.train()
            moved = {n for n, p in named.items() if not torch.equal(before[n], p)}
            save_checkpoint(trainer, trainer.processing_class, out, lora=True)
            steps = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert steps and steps[0]["reward_std"] > 0 and moved and all("lora_" in n for n in moved)
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "model.safetensors").is_file()
    from transformers import AutoModelForImageTextToText

    merged = AutoModelForImageTextToText.from_pretrained(str(out))  # a plain checkpoint again
    assert not any("lora_" in n for n, _ in merged.named_parameters())
