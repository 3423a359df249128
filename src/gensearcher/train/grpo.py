"""Agentic GRPO over TRL: our agent loop is the rollout, the generator and the judge are the reward.

    train_grpo(config, model="ckpt/sft", data=Path("data/rl"), settings=load_settings())

`GenSearcherGRPOTrainer` is TRL's `GRPOTrainer` with its generation replaced, not its update. For each
generation batch every rollout runs at once on one event loop: `Agent.run` with our tools, protocol,
IMG registry and final round, its policy a token-exact `RolloutPolicy` over the model being trained,
then the answer rendered and judged (`train.reward`). The token sequences, loss masks and tool images go
back to TRL's own scoring and loss code, which computes the group advantages and the clipped loss.

Three overrides, each the smallest that does the job (the private names are pinned by a contract test):
- `_generate`: the rollouts. TRL's tool loop would show the model other prompts than inference does.
- `_generate_and_score_completions`: an excluded rollout (an outage, not the model's fault) gets a None
  reward, which TRL already keeps out of its group's mean and std; here its tokens also leave the loss.
- `_compute_loss`: the loss types that divide by the number of rows count only the rows still in it
  (one factor over the generation batch and all ranks, so the shuffle into micro-batches changes nothing).

Every rollout is written per step under `OUT/rollouts/step-N/` as a research run the viewer opens
(results.json, trajectories/, results_eval.json with the generated images and scores), and each step's
reward summary is appended to `OUT/rewards.jsonl`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field
from trl import GRPOTrainer

from gensearcher._files import write_atomic
from gensearcher.agent.batch import crashed_trajectory, item_filename, result_row
from gensearcher.agent.factory import AgentRecipe
from gensearcher.agent.trajectory import Trajectory, save_trajectory
from gensearcher.config import Settings
from gensearcher.data.io import dumps, json_array, read_tasks
from gensearcher.data.records import JudgedRow, Scores, Task
from gensearcher.errors import GenSearcherError, UserError
from gensearcher.train.config import GenGRPOConfig
from gensearcher.train.reward import Rewarder, RewardRecord
from gensearcher.train.rollout import (
    RolloutEngine,
    RolloutPolicy,
    Sampling,
    SequenceError,
    TrainingSequence,
    load_images,
    training_sequence,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Exclusions a retry can cure, by what must run again; the rest (no ground truth, internal_error: a crash
# in our code, which a re-run after a pause only repeats) are permanent.
_RESCORE = {"generator_failed", "judge_failed"}
_RERUN = {"tool_outage", "policy_backend"}
_ROW_LOSSES = {"grpo", "sapo", "luspo", "dr_grpo"}  # losses normalised by the number of rows


class TrainingHalted(GenSearcherError):
    """Too many rollouts were excluded (services down) for too long: training stopped before an empty step."""


class RolloutRecord(BaseModel):
    """One rollout of a step: what it did, what it earned, and whether the update used it."""

    id: str = Field(..., description="Unique in the step: group, task id, rollout number.")
    task_id: int | str = Field(..., description="The RL prompt's id.")
    group: int = Field(..., description="The prompt's position in the generation batch (its group).")
    rollout: int = Field(..., description="Rollout number within its group.")
    step: int = Field(..., description="The optimizer step the rollout trains.")
    termination: str = Field(..., description="How the research ended.")
    reward: RewardRecord = Field(..., description="Score, components, rationale, generated image.")
    excluded: bool = Field(..., description="Left out of the loss and of its group's statistics.")
    generated_tokens: int = Field(..., description="Tokens the model sampled (the ones in the loss).")
    sequence_tokens: int = Field(..., description="Prompt plus everything after it.")
    images: int = Field(..., description="Tool images inside the sequence.")
    tool_calls: int = 0
    rollout_s: float = Field(..., description="Wall time of the research.")
    reward_s: float = Field(..., description="Wall time of generation and judging.")
    attempts: int = Field(1, description="Runs it took (an outage is retried).")


class _Outcome:
    def __init__(self, task: Task, trajectory: Trajectory, reward: RewardRecord, rollout_s: float, reward_s: float):
        self.task, self.trajectory, self.reward = task, trajectory, reward
        self.rollout_s, self.reward_s, self.attempts = rollout_s, reward_s, 1


class _LoopThread:
    """One event loop in a daemon thread for the whole run: the tools' connections outlive a step."""

    def __init__(self, workers: int = 32) -> None:
        self.loop = asyncio.new_event_loop()
        # Renders, image decoding and judging preparation of dozens of rollouts go through `to_thread`:
        # the default pool (cores + 4) would queue a short render behind other rollouts' image work.
        self.loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="rollout"))
        self._thread = threading.Thread(target=self.loop.run_forever, name="gensearcher-rollouts", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


def agent_tools() -> None:
    """Marker: the agent's tools run inside our rollouts. Its presence in `trainer.tools` is what makes
    GRPOTrainer build the forward pass's pixel inputs from the images inside completions."""


def research_reward(prompts: list[Any], completions: list[Any], gensearcher_reward: list[float | None],
                    **_: Any) -> list[float | None]:
    """The rollouts' rewards, computed during the rollouts (None: excluded)."""
    return list(gensearcher_reward)


class GenSearcherGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose completions are research-agent rollouts (see the module text).

    Args:
        model: the policy (a loaded Qwen3-VL-family model).
        args: the GRPO configuration.
        train_dataset: rows of `prompt` (the task as a chat) and `task` (the Task as JSON).
        processing_class: the model's processor; rollouts and the training forward both use it.
        settings: tools, generator, judge and agent settings.
        recipe: the agent's texts and budgets.
        services: an async context manager factory yielding (toolbox, rewarder), entered on the rollout loop.
        engine_factory: builds the step's `RolloutEngine` from (model, processor, sampling, max_batch); a
            test passes one that replays fixed turns.
        callbacks: extra `transformers.TrainerCallback`s.
        peft_config: a LoRA configuration (peft) to train an adapter instead of every weight.
    """

    def __init__(self, *, model: Any, args: GenGRPOConfig, train_dataset: Any, processing_class: Any,
                 settings: Settings, recipe: AgentRecipe, services: Any, engine_factory: Any = RolloutEngine,
                 callbacks: list[Any] | None = None, peft_config: Any = None):
        super().__init__(model=model, reward_funcs=[research_reward], args=args, train_dataset=train_dataset,
                         processing_class=processing_class, callbacks=callbacks, peft_config=peft_config)
        self.config = args
        self.group_size = int(args.num_generations or 1)
        self.tools = [agent_tools]
        self.settings = settings
        self.recipe = recipe
        self.engine_factory = engine_factory
        self._loop = _LoopThread()
        self._stack = contextlib.AsyncExitStack()
        self._toolbox, self._rewarder = self._loop.run(self._stack.enter_async_context(services()))
        self._inputs: list[dict[str, Any]] = []
        self._excluded: list[bool] = []
        self._images_of_batch: list[bool] = []
        self._last_outcomes: list[_Outcome] = []
        self.rollout_dir = Path(str(self.args.output_dir)) / "rollouts"
        self.text_tokenizer = processing_class.tokenizer
        self.vision_start_id = _token_id(self.text_tokenizer, "<|vision_start|>")
        self._phase_s = 0.0  # the rollout phase inside the current training_step
        self._window_s = 0.0  # forward and backward time of the current accumulation window
        self._refuse_unsafe_sharding()

    def _refuse_unsafe_sharding(self) -> None:
        # Rollouts take a different number of turns on each rank: generation must need no collective.
        if self.is_fsdp_enabled:
            raise UserError("GRPO under FSDP is not supported yet (generation would need every rank at every "
                            "turn); use DeepSpeed ZeRO-3 or plain data parallel")
        if self.is_deepspeed_enabled and not self.config.ds3_gather_for_generation:
            raise UserError("ds3_gather_for_generation: false would make every turn a collective across ranks; "
                            "GRPO rollouts need it true")

    def close(self) -> None:
        """Close the tools, generator and judge, and stop the rollout loop."""
        with contextlib.suppress(Exception):
            self._loop.run(self._stack.aclose())
        self._loop.close()

    # -- TRL's seams ---------------------------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._inputs = inputs
        output = super()._generate_and_score_completions(inputs)
        keep = 1 - torch_tensor(self._excluded, like=output["completion_mask"])
        output["tool_mask"] = output["tool_mask"] * keep.unsqueeze(1)
        live = output["completion_mask"] * output["tool_mask"]
        output["num_items_in_batch"] = self.accelerator.gather(live.sum()).sum()
        # Rows over kept rows of the whole generation batch on every rank, one factor for all: a per
        # micro-batch factor would make each rollout's weight depend on where TRL's shuffle puts it.
        rows = self.accelerator.gather(torch_tensor([True] * len(self._excluded), like=live).sum()).sum()
        kept = self.accelerator.gather(keep.sum()).sum()
        scale = (rows / kept.clamp(min=1)).to(output["advantages"].dtype)
        output["row_scale"] = scale.expand(len(self._excluded)).clone()
        if any(self._images_of_batch) and "pixel_values" not in output:
            raise GenSearcherError("TRL dropped the batch's images (image tokens and pixels disagree)")
        return output

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> Any:
        started = time.monotonic()
        self._phase_s = 0.0
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._window_s += time.monotonic() - started - self._phase_s
        if self._step % self.config.gradient_accumulation_steps == 0:
            self._metrics["train"]["timing/update_s"].append(self._window_s)
            self._window_s = 0.0
        return loss

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> Any:
        if self.loss_type in _ROW_LOSSES and "row_scale" in inputs:
            # The loss is linear in the advantages: the scale makes it divide by the rows kept, not all rows.
            inputs = {**inputs, "advantages": inputs["advantages"] * inputs["row_scale"]}
        return super()._compute_loss(model, inputs)

    def _generate(self, prompts: list[Any]) -> tuple[Any, ...]:
        from trl.models import unwrap_model_for_generation

        step = self.state.global_step + 1
        tasks = [Task.model_validate_json(row["task"]) for row in self._inputs]
        started = time.monotonic()
        with unwrap_model_for_generation(
            self.model_wrapped, self.accelerator, gather_deepspeed3_params=self.config.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=self.config.gradient_checkpointing_kwargs,  # type: ignore[arg-type]
        ) as unwrapped:
            engine = self.engine_factory(unwrapped, self.processing_class, self._sampling(), self.config.rollout_batch)
            outcomes, halt = self._loop.run(self._rollouts(engine, tasks, step))
        phase_s = self._phase_s = time.monotonic() - started
        sequences = [self._sequence(o) for o in outcomes]
        self._excluded = [o.reward.status == "excluded" for o in outcomes]
        self._last_outcomes = outcomes
        self._record_step(step, outcomes, sequences)  # also when halting: the records say what failed
        # Every rank stops together, or the others would wait for it at the next collective.
        import torch

        halting = self.accelerator.gather(torch.tensor([halt is not None], device=self.accelerator.device))
        if halt is not None or bool(halting.any()):
            raise TrainingHalted(halt or f"step {step}: another rank stopped on an outage (see its log)")
        images = [load_images(s.images) or None for s in sequences]
        self._images_of_batch = [bool(i) for i in images]
        self._log_rollouts(outcomes, sequences, phase_s, engine)
        completions = [[{"role": "assistant", "content": o.trajectory.steps[-1].response if o.trajectory.steps else ""}]
                       for o in outcomes]
        extra = {"gensearcher_reward": [o.reward.reward for o in outcomes]}
        return ([s.prompt_ids for s in sequences], [s.completion_ids for s in sequences], [s.mask for s in sequences],
                completions, None, extra, images if any(images) else None, [i or [] for i in images])

    def _sequence(self, outcome: _Outcome) -> TrainingSequence:
        """The rollout's token sequence; a rollout without one (the policy failed before its first turn)
        is excluded and stands in the batch as one masked token."""
        try:
            return training_sequence(outcome.trajectory, vision_start_id=self.vision_start_id)
        except SequenceError as exc:
            if outcome.reward.status != "excluded":
                outcome.reward = outcome.reward.model_copy(update={
                    "status": "excluded", "reward": None, "reason": "no_sequence", "detail": str(exc)})
            eos = self.text_tokenizer.eos_token_id
            return TrainingSequence(prompt_ids=[eos], completion_ids=[eos], mask=[0], images=[])

    # -- rollouts ----------------------------------------------------------------------------------------------

    def _sampling(self) -> Sampling:
        return Sampling(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                        max_new_tokens=self.config.max_turn_tokens,
                        seed=self.args.seed + self.state.global_step + 100_003 * self.accelerator.process_index)

    async def _rollouts(self, engine: RolloutEngine, tasks: list[Task], step: int) -> tuple[list[_Outcome], str | None]:
        """Every rollout of the batch at once; outages are retried with backoff. Returns the outcomes and,
        when too many stay excluded, why training must stop."""
        outcomes = await asyncio.gather(*(self._one(engine, task, self._rollout_name(step, i, task)) for i, task in enumerate(tasks)))
        limit = self.config.max_excluded_fraction
        for attempt in range(self.config.outage_retries + 1):
            excluded = [i for i, o in enumerate(outcomes) if o.reward.status == "excluded"]
            if len(excluded) <= limit * len(outcomes):
                return outcomes, None
            curable = [i for i in excluded if outcomes[i].reward.reason in _RESCORE | _RERUN]
            reasons = sorted({str(outcomes[i].reward.reason) for i in excluded})
            if attempt == self.config.outage_retries or not curable:
                why = ("rollouts crashed (internal_error: a bug, its tracebacks are in the log)"
                       if "internal_error" in reasons else "the generator, judge or search services are not answering")
                return outcomes, (
                    f"step {step}: {len(excluded)} of {len(outcomes)} rollouts excluded ({', '.join(reasons)}) after "
                    f"{attempt} pause(s); {why}. Fix them and resume with --resume (the last checkpoint is kept)")
            pause = self.config.outage_backoff_s * 2**attempt
            logger.warning("step %d: %d of %d rollouts excluded (%s); pausing %.0f s before retrying them",
                           step, len(excluded), len(outcomes), ", ".join(reasons), pause)
            await asyncio.sleep(pause)
            retried = await asyncio.gather(*(self._retry(engine, outcomes[i], self._rollout_name(step, i, tasks[i]))
                                             for i in curable))
            for i, outcome in zip(curable, retried, strict=True):
                outcomes[i] = outcome
        raise AssertionError("unreachable: the last attempt returns")

    async def _one(self, engine: RolloutEngine, task: Task, name: str) -> _Outcome:
        started = time.monotonic()
        policy = RolloutPolicy(engine, max_completion_tokens=int(self.max_completion_length or 0))
        try:
            trajectory = await self.recipe.agent(policy, self._toolbox).run(task)
        except Exception as exc:  # a bug must cost this rollout, not the step: excluded, as a crash
            logger.exception("rollout %s crashed", name)
            return _Outcome(task, crashed_trajectory(task, exc), _crashed("the rollout", exc),
                            time.monotonic() - started, 0.0)
        scored = time.monotonic()
        return _Outcome(task, trajectory, await self._score(task, trajectory, name), scored - started,
                        time.monotonic() - scored)

    async def _score(self, task: Task, trajectory: Trajectory, name: str) -> RewardRecord:
        try:
            return await self._rewarder.score(task, trajectory, name=self._image_name(name))
        except OSError as exc:  # e.g. a full disk saving the image: excluded, and retried like the generator
            logger.exception("scoring %s failed", name)
            return RewardRecord(status="excluded", reward=None, reason="generator_failed", text_coef=0.0,
                                detail=f"scoring failed: {type(exc).__name__}")
        except Exception as exc:  # a bug in the scoring: excluded, as a crash
            logger.exception("scoring %s crashed", name)
            return _crashed("its scoring", exc)

    async def _retry(self, engine: RolloutEngine, outcome: _Outcome, name: str) -> _Outcome:
        if outcome.reward.reason in _RESCORE:
            started = time.monotonic()
            reward = await self._score(outcome.task, outcome.trajectory, name)
            retried = _Outcome(outcome.task, outcome.trajectory, reward, outcome.rollout_s, time.monotonic() - started)
        else:
            retried = await self._one(engine, outcome.task, name)
        retried.attempts = outcome.attempts + 1
        return retried

    def _image_name(self, name: str) -> str:
        # Unique over the run: a later step's image must not replace the one an earlier step's record names.
        return f"step-{self.state.global_step + 1:06d}-{name}"

    def _rollout_name(self, step: int, index: int, task: Task) -> str:
        group, rollout = divmod(index, self.group_size)
        rank = f"p{self.accelerator.process_index}-" if self.accelerator.num_processes > 1 else ""
        return f"{rank}g{group:03d}-{task.id}-r{rollout}"

    # -- records and metrics -----------------------------------------------------------------------------------

    def _record_step(self, step: int, outcomes: list[_Outcome], sequences: list[TrainingSequence]) -> None:
        folder = self.rollout_dir / f"step-{step:06d}"
        if self.accelerator.num_processes > 1:
            folder = folder / f"rank-{self.accelerator.process_index}"
        research, judged = [], []
        for index, (outcome, sequence) in enumerate(zip(outcomes, sequences, strict=True)):
            name = self._rollout_name(step, index, outcome.task)
            path = folder / "trajectories" / item_filename(name, ".json")
            save_trajectory(outcome.trajectory, path, fsync=False)
            group, rollout = divmod(index, self.group_size)
            record = RolloutRecord(
                id=name, task_id=outcome.task.id, group=group, rollout=rollout, step=step,
                termination=outcome.trajectory.termination or "", reward=outcome.reward,
                excluded=outcome.reward.status == "excluded", generated_tokens=sequence.generated,
                sequence_tokens=len(sequence.prompt_ids) + len(sequence.completion_ids), images=len(sequence.images),
                tool_calls=sum(1 for s in outcome.trajectory.steps if s.tool_call is not None),
                rollout_s=round(outcome.rollout_s, 3), reward_s=round(outcome.reward_s, 3), attempts=outcome.attempts)
            task = outcome.task.model_copy(update={"id": name})
            row = result_row(outcome.trajectory, str(path.relative_to(folder)), task)
            research.append(dumps({**row.to_json(), "rollout": record.model_dump(mode="json")}))
            if outcome.reward.generated_image:
                judged.append(dumps(_judged_row(name, outcome)))
        write_atomic(folder / "results.json", json_array(research), fsync=False)
        write_atomic(folder / "results_eval.json", json_array(judged), fsync=False)
        if self.accelerator.is_main_process:
            values = [o.reward.reward for o in outcomes if o.reward.reward is not None]
            summary = {"step": step, "reward": sum(values) / len(values) if values else None,
                       "rollouts": len(outcomes), "excluded": sum(self._excluded),
                       "policy_failures": sum(o.reward.status == "policy_failure" for o in outcomes)}
            append_step_line(self.rollout_dir.parent / "rewards.jsonl", summary)

    def _log_rollouts(self, outcomes: list[_Outcome], sequences: list[TrainingSequence], phase_s: float,
                      engine: RolloutEngine) -> None:
        metrics = self._metrics["train"]
        count = len(outcomes)
        calls = [sum(1 for s in o.trajectory.steps if s.tool_call is not None) for o in outcomes]
        outages = [sum(1 for s in o.trajectory.steps if s.tool_call is not None and s.tool_call.outage) for o in outcomes]
        metrics["rollouts/excluded_fraction"].append(sum(self._excluded) / count)
        metrics["rollouts/policy_failure_fraction"].append(
            sum(o.reward.status == "policy_failure" for o in outcomes) / count)
        metrics["rollouts/answered_fraction"].append(sum(o.trajectory.termination == "answer" for o in outcomes) / count)
        metrics["rollouts/rounds"].append(sum(len(o.trajectory.steps) for o in outcomes) / count)
        metrics["tools/call_frequency"].append(sum(calls) / count)
        metrics["tools/outage_frequency"].append(sum(outages) / max(1, sum(calls)))
        metrics["tokens/generated"].append(sum(s.generated for s in sequences) / count)
        metrics["timing/rollout_s"].append(max(o.rollout_s for o in outcomes))
        metrics["timing/reward_s"].append(max(o.reward_s for o in outcomes))
        metrics["timing/generate_and_score_s"].append(phase_s)
        metrics["timing/policy_busy_s"].append(engine.busy_s)


def _judged_row(name: str, outcome: _Outcome) -> dict[str, Any]:
    reward = outcome.reward
    scores = Scores(rationale=reward.rationale, overall=reward.image_score,
                    **{k: v for k, v in reward.judge_scores.items() if k in Scores.model_fields})
    row = JudgedRow(id=name, prompt=outcome.task.prompt, meta=outcome.task.meta, gt_image=outcome.task.gt_image,
                    output_path=reward.generated_image, used_prompt=reward.gen_prompt,
                    used_images=reward.reference_images, success=True, scores=scores)
    return row.to_json()


def _crashed(what: str, exc: Exception) -> RewardRecord:
    # The exception's text stays in the log: it may quote anything (a request, a configured secret).
    return RewardRecord(status="excluded", reward=None, reason="internal_error", text_coef=0.0,
                        detail=f"{what} crashed: {type(exc).__name__} (traceback in the training log)")


def append_step_line(path: Path, summary: dict[str, Any]) -> None:
    """Append a step's line; lines of this step or later (a run killed and resumed from an earlier
    checkpoint) are dropped first, so every step appears once, as last trained."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    kept = [line for line in lines if _step_of(line) < summary["step"]]
    if len(kept) == len(lines):
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(summary) + "\n")
        return
    write_atomic(path, "".join(line + "\n" for line in [*kept, json.dumps(summary)]).encode("utf-8"), fsync=False)


def _step_of(line: str) -> int:
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return -1
    return step if isinstance(step, int) else -1


def torch_tensor(values: list[bool], *, like: Any) -> Any:
    import torch

    return torch.tensor([int(v) for v in values], device=like.device, dtype=like.dtype)


def _token_id(tokenizer: Any, name: str) -> int | None:
    token = tokenizer.convert_tokens_to_ids(name)
    return token if isinstance(token, int) and token != tokenizer.unk_token_id else None


# -- the command ---------------------------------------------------------------------------------------------


class GRPORecord(BaseModel):
    """`grpo.json` beside the checkpoint: what the run trained on and what it saw."""

    base_model: str
    data: str
    prompts: int
    steps: int
    rewards: list[float | None] = Field(default_factory=list, description="Mean reward by step.")
    excluded_fraction: list[float] = Field(default_factory=list, description="Excluded share by step.")
    resumed_from: str | None = None
    config: dict[str, Any]
    versions: dict[str, str]
    started_at: str
    finished_at: str


def rl_tasks(data: Path) -> list[Task]:
    """The RL prompts: a folder from `data import-rl` (its train split) or any KnowGen-format file."""
    path = data / "train.jsonl" if data.is_dir() else data
    if not path.is_file():
        raise UserError(f"{data}: no RL prompts (a folder from `gensearcher data import-rl`, or a KnowGen-format file)")
    return read_tasks(path)


def train_grpo(config: GenGRPOConfig, *, model: str, data: Path, settings: Settings, resume: bool = False,
               system_prompt_file: Path | None = None, callbacks: list[Any] | None = None) -> GRPORecord:
    """Train `model` (an SFT checkpoint) with GRPO on the RL prompts in `data`; writes to `config.output_dir`.

    `settings` configures the tools, the generator and the judge of the reward, as for `gensearcher eval`.
    """
    import datetime as _dt

    from datasets import Dataset

    from gensearcher.train.sft import (
        _checkpoint_to_resume,
        _config_record,
        _versions,
        freeze_vision,
        load_for_training,
        lora_config,
        save_checkpoint,
    )

    started = _dt.datetime.now(_dt.UTC).isoformat()
    out = Path(str(config.output_dir))
    tasks = rl_tasks(data)
    settings = training_settings(settings, config)
    recipe = AgentRecipe.from_settings(settings, out, system_prompt_file=system_prompt_file)
    policy, processor = load_for_training(model, config)
    if config.freeze_vision and not config.lora:  # LoRA adapts the language model only anyway
        freeze_vision(policy)
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": task.prompt}], "task": task.model_dump_json()}
                                 for task in tasks])
    trainer = GenSearcherGRPOTrainer(model=policy, args=config, train_dataset=dataset, processing_class=processor,
                                     settings=settings, recipe=recipe, services=lambda: reward_services(settings, out),
                                     peft_config=lora_config(config))
    try:
        for callback in callbacks or []:
            trainer.add_callback(callback)
        resume_from = _checkpoint_to_resume(out) if resume else None
        trainer.train(resume_from_checkpoint=resume_from)
        save_checkpoint(trainer, processor, out, lora=config.lora)
    finally:
        trainer.close()
    history = trainer.state.log_history
    record = GRPORecord(
        base_model=model, data=str(data.resolve()), prompts=len(tasks), steps=trainer.state.global_step,
        rewards=[entry.get("reward") for entry in history if "reward" in entry],
        excluded_fraction=[entry["rollouts/excluded_fraction"] for entry in history
                           if "rollouts/excluded_fraction" in entry],
        resumed_from=resume_from, config=_config_record(config), versions=_versions(), started_at=started,
        finished_at=_dt.datetime.now(_dt.UTC).isoformat())
    if trainer.is_world_process_zero():
        write_atomic(out / "grpo.json", record.model_dump_json(indent=2).encode("utf-8"))
    return record


def training_settings(settings: Settings, config: GenGRPOConfig) -> Settings:
    """The agent's budgets as the trainer sets them: its per-turn cap; the rollout budget is the policy's."""
    agent = settings.agent.model_copy(update={
        "max_new_tokens_per_turn": config.max_turn_tokens,
        # The rollout policy enforces max_completion_length exactly; the estimate-based guard must not cut first.
        "max_context_tokens": max(settings.agent.max_context_tokens, 10 * int(config.max_completion_length or 0)),
    })
    return settings.model_copy(update={"agent": agent})


@contextlib.asynccontextmanager
async def reward_services(settings: Settings, out: Path) -> Any:
    """(toolbox, rewarder) for a training run, closed on exit: the tools, the generator and the judge."""
    from gensearcher.agent.prompts import judge_rubrics
    from gensearcher.generate import build_generator
    from gensearcher.judge import Judge
    from gensearcher.tools import build_tools
    from gensearcher.web import WebCache

    tools = build_tools(settings, output_dir=out)
    generator = judge = None
    try:
        generator = build_generator(settings)
        judge = Judge(settings.judge, cache=WebCache(settings.cache.dir or out / "web-cache"),
                      image_dir=out / "judge-images", rubrics=judge_rubrics(settings.reference_texts))
        rewarder = Rewarder(settings, generator=generator, judge=judge,
                            image_dir=settings.reward.image_dir or out / "reward-images")
        yield tools.toolbox, rewarder
    finally:
        try:
            if judge is not None:
                await judge.aclose()
            if generator is not None:
                await generator.aclose()
        finally:
            await tools.aclose()
