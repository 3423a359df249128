"""GRPO cost on one GPU: two steps of a Qwen3-VL at 2B shapes (random weights), 2 prompts x 4 rollouts.

The real trainer (`GenSearcherGRPOTrainer`: TRL's scoring, loss and optimizer) and the real `RolloutEngine`
(transformers `generate`, sampling at the recipe's temperature and top_p, concurrent rollouts batched),
with local stand-ins on this machine for the tools (`LocalWeb`'s Serper endpoints), the generator
(`ImageApis`, OpenAI Images) and the judge (`ScriptedPolicyServer`, graded KnowGen answers). bf16 on CUDA
(weights and compute), fp32 on CPU; nothing else differs between the two paths.

A model with random weights never writes our protocol, so each turn keeps the tokens it sampled (mapped
onto plain words of the tokenizer, inside <think>) and the engine appends the protocol part: an
image_search in round 1, a search in round 2, the answer citing IMG_001 in round 3. Sampling, the
per-turn cap (256 tokens), batching, the training sequence and the update are the real ones.

Per step it reports the time split (the rollout phase `timing/generate_and_score_s`, of it the model's
generate time `timing/policy_busy_s`, the slowest research and reward; update = step - rollout phase, and
the trainer's own `timing/update_s`),
peak CUDA memory, and generated tokens/s. Sized to finish in about 8 minutes on one H100/H200.

    python benchmarks/gpu_grpo.py            # on cuda
    python benchmarks/gpu_grpo.py --tiny     # the tiny model on CPU: checks the script itself

A bare GPU machine has torch, transformers, accelerate, aiohttp, yarl, PIL and pyyaml, but not TRL,
datasets, this package's pydantic stack or the stand-ins' web servers. Carry them as wheels (see the device
notes); `benchmarks/gpu_grpo.sh` downloads them here (`bash benchmarks/gpu_grpo.sh fetch`) and runs the
benchmark there (`bash benchmarks/gpu_grpo.sh run`, with `.whl` carried).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_sft import TEXT_2B, TEXT_TINY, VISION_2B, VISION_TINY, VOCAB, qwen3_vl_config

from gensearcher.train.rollout import RolloutEngine

JUDGE_KEY = "sk-bench-judge-0123456789"
GRADES = [0.9, 0.2, 0.6, 0.1, 0.8, 0.3, 0.7, 0.4]  # distinct within a group: non-zero advantages
PROMPTS, GROUP, STEPS, ROUNDS = 2, 4, 2, 3
# --tiny only: the default system prompt is ~4k tokens in the tiny tokenizer, slow to train on CPU.
SHORT_PROMPT = ("You research pictures. Today is {{date}}. Tools: {{tools}}. Write <think>...</think>, then one "
                "<tool_call> or one <answer> citing at most {{max_refs}} images.")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def knowgen(value: float) -> str:
    return json.dumps({"rationale": "graded", "faithfulness": value, "visual_correctness": value,
                       "text_accuracy": value, "text_accuracy_na": False, "aesthetics": value})


class ProtocolEngine(RolloutEngine):
    """The real engine; each sampled turn is kept inside <think> (its ids mapped onto plain words) and the
    protocol part is appended (round 1 image_search, round 2 search, round 3 the answer)."""

    def __init__(self, *args: Any, serial: itertools.count):
        super().__init__(*args)
        tokenizer = self.tokenizer
        plain = [i for i in range(len(tokenizer)) if re.fullmatch(r"[ A-Za-z0-9]+", tokenizer.decode([i]) or "")]
        self.plain = plain
        self.im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
        self.im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.serial = serial
        self.sampled = 0
        self.batch_sizes: list[int] = []

    def _generate(self, batch: list[Any]) -> list[list[int]]:
        outputs = super()._generate(batch)
        self.batch_sizes.append(len(batch))
        self.sampled += sum(len(ids) for ids in outputs)
        return [self._wrap(request.ids, ids) for request, ids in zip(batch, outputs, strict=True)]

    def _wrap(self, context: list[int], sampled: list[int]) -> list[int]:
        # system, user, then (assistant, observation) per earlier round, then this turn's assistant header.
        turn = (context.count(self.im_start) - 1) // 2
        n = next(self.serial)
        if turn >= ROUNDS:
            body = {"gen_prompt": f"The poster, draft {n}, as in the reference.",
                    "reference_images": [{"img_id": "IMG_001", "note": "the kit"}]}
            tail = f"<answer>{json.dumps(body)}</answer>"
        else:
            name, arguments = (("image_search", {"query": f"team kit {n}", "top_k": 1}) if turn == 1 else
                               ("search", {"queries": [f"team final {n}"], "top_k": 3}))
            tail = f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"
        words = [self.plain[token % len(self.plain)] for token in sampled if token != self.im_end]
        encode = self.tokenizer.backend_tokenizer.encode
        return [*encode("<think>", add_special_tokens=False).ids, *words,
                *encode("</think>\n" + tail, add_special_tokens=False).ids, self.im_end]


def build_model(config: Any, cuda: bool) -> Any:
    from transformers import Qwen3VLForConditionalGeneration

    dtype = torch.bfloat16 if cuda else torch.float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("cuda" if cuda else "cpu"):
            model = Qwen3VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    return model


def prepare_folder(folder: Path, tokenizer: Any, config: Any) -> Any:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from gensearcher.policy.transformers_local import load_processor

    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    Qwen2VLImageProcessorPil(patch_size=16, temporal_patch_size=2, merge_size=2,
                             size={"shortest_edge": 32 * 32, "longest_edge": 16_777_216}).save_pretrained(folder)
    return load_processor(str(folder))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from datasets import Dataset
    from PIL import Image
    from transformers import TrainerCallback

    from gensearcher.agent.factory import AgentRecipe
    from gensearcher.config import load_settings
    from gensearcher.testing import ScriptedPolicyServer
    from gensearcher.testing.image_apis import KEY, ImageApis
    from gensearcher.testing.local_web import LocalWeb
    from gensearcher.testing.tiny_models import qwen3_vl_chat_template, tiny_tokenizer
    from gensearcher.train.config import GenGRPOConfig, load_config
    from gensearcher.train.grpo import GenSearcherGRPOTrainer, reward_services, training_settings
    from gensearcher.train.sft import freeze_vision

    cuda = torch.cuda.is_available() and not args.tiny
    tokenizer = tiny_tokenizer(qwen3_vl_chat_template())
    text, vision, vocab = (TEXT_TINY, VISION_TINY, len(tokenizer)) if args.tiny else (TEXT_2B, VISION_2B, VOCAB)
    turn_tokens = 32 if args.tiny else args.turn_tokens
    config = qwen3_vl_config(text, vision, tokenizer, vocab)
    grades = itertools.cycle(GRADES)
    judge = ScriptedPolicyServer(lambda body: knowgen(next(grades)), model="judge", api_key=JUDGE_KEY, record=False)
    engines: list[ProtocolEngine] = []
    serial = itertools.count()

    def engine_factory(model: Any, processor: Any, sampling: Any, max_batch: int) -> ProtocolEngine:
        engines.append(ProtocolEngine(model, processor, sampling, max_batch, serial=serial))
        return engines[-1]

    with tempfile.TemporaryDirectory() as scratch, LocalWeb() as web, ImageApis() as apis, judge:
        folder = Path(scratch)
        processor = prepare_folder(folder / "model", tokenizer, config)
        started = time.perf_counter()
        model = build_model(config, cuda)
        model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        if cuda:
            torch.cuda.synchronize()
        build_s = time.perf_counter() - started
        frozen = freeze_vision(model)
        log(f"model built in {build_s:.1f} s: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters")
        out = folder / "grpo"
        grpo = load_config(None, {
            "output_dir": str(out), "max_steps": STEPS, "num_generations": GROUP, "per_device_train_batch_size": GROUP,
            "gradient_accumulation_steps": PROMPTS, "max_completion_length": 8192, "max_turn_tokens": turn_tokens,
            "rollout_batch": PROMPTS * GROUP, "report_to": "none", "save_strategy": "no", "logging_steps": 1,
            "bf16": cuda, "use_cpu": not cuda, "model_dtype": "bfloat16" if cuda else "float32", "seed": 1,
            "disable_tqdm": True, "outage_retries": 0}, GenGRPOConfig)
        settings = training_settings(load_settings({
            "agent": {"date": "2026-12-01", "max_llm_calls": ROUNDS},
            "search": {"backend": "serper", "serper_api_key": "test-key", "text_search_url": web.url + "/serper/search",
                       "image_search_url": web.url + "/serper/images", "summarise": False},
            "fetch": {"allowed_networks": ["127.0.0.1/32"], "per_host_concurrency": 16},
            "cache": {"dir": str(out / "web-cache")},
            "generator": {"backend": "openai", "api_key": KEY, "api_base_url": apis.url + "/v1", "max_retries": 0},
            "judge": {"base_url": judge.base_url, "model": "judge", "api_key": JUDGE_KEY, "max_retries": 0},
        }), grpo)
        prompt_file = None
        if args.tiny:
            prompt_file = folder / "short-prompt.md"
            prompt_file.write_text(SHORT_PROMPT)
        gt = folder / "gt.png"
        Image.effect_noise((1328, 1328), 40).convert("RGB").save(gt)
        rows = []
        for i in range(PROMPTS * STEPS):
            prompt = f"A poster of team {i} lifting the 2026 cup in this season's kit"
            rows.append({"prompt": [{"role": "user", "content": prompt}],
                         "task": json.dumps({"id": f"t{i}", "prompt": prompt, "gt_image": str(gt)})})
        trainer = GenSearcherGRPOTrainer(
            model=model, args=grpo, train_dataset=Dataset.from_list(rows), processing_class=processor,
            settings=settings, recipe=AgentRecipe.from_settings(settings, out, system_prompt_file=prompt_file),
            services=lambda: reward_services(settings, out), engine_factory=engine_factory)
        steps: list[dict[str, float]] = []

        class Clock(TrainerCallback):
            def on_step_begin(self, *_: object, **__: object) -> None:
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                steps.append({"began": time.perf_counter()})

            def on_step_end(self, *_: object, **__: object) -> None:
                if cuda:
                    torch.cuda.synchronize()
                steps[-1]["step_s"] = time.perf_counter() - steps[-1]["began"]
                steps[-1]["peak_gb"] = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0

        trainer.add_callback(Clock())
        try:
            with contextlib.redirect_stdout(sys.stderr):  # the trainer's log lines; stdout is for the JSON
                trainer.train()
        finally:
            trainer.close()
        history = [entry for entry in trainer.state.log_history if "timing/generate_and_score_s" in entry]
        rewards = [json.loads(line) for line in (out / "rewards.jsonl").read_text().splitlines()]
        for number, reward in enumerate(rewards, start=1):
            records = json.loads((out / "rollouts" / f"step-{number:06d}" / "results.json").read_text())
            lengths = [row["rollout"]["sequence_tokens"] for row in records]
            reward["sequence_tokens_mean"] = round(sum(lengths) / len(lengths), 1)
            reward["sequence_tokens_max"] = max(lengths)
    return report(args, cuda, model, frozen, build_s, steps, history, engines, rewards, turn_tokens)


def report(args: argparse.Namespace, cuda: bool, model: Any, frozen: int, build_s: float, steps: list[dict[str, float]],
           history: list[dict[str, Any]], engines: list[ProtocolEngine], rewards: list[dict[str, Any]],
           turn_tokens: int) -> dict[str, Any]:
    per_step = []
    for number, (clock, entry, engine) in enumerate(zip(steps, history, engines, strict=True), start=1):
        phase = entry["timing/generate_and_score_s"]
        busy = entry["timing/policy_busy_s"]
        per_step.append({
            "step": number, "step_s": round(clock["step_s"], 2), "rollout_phase_s": round(phase, 2),
            "policy_generate_s": round(busy, 2), "slowest_research_s": round(entry["timing/rollout_s"], 2),
            "slowest_reward_s": round(entry["timing/reward_s"], 2), "update_s": round(clock["step_s"] - phase, 2),
            "forward_backward_s": round(entry["timing/update_s"], 2) if "timing/update_s" in entry else None,
            "generate_calls": engine.calls, "batch_sizes": engine.batch_sizes, "sampled_tokens": engine.sampled,
            "sampled_tokens_per_s": round(engine.sampled / busy, 1) if busy else None,
            "loss_tokens_mean": round(entry.get("tokens/generated", 0.0), 1),
            "reward_mean": entry.get("reward"), "reward_std": entry.get("reward_std"),
            "excluded_fraction": entry.get("rollouts/excluded_fraction"), "peak_cuda_gb": round(clock["peak_gb"], 1),
            "loss": entry.get("loss")})
    return {
        "benchmark": "gpu_grpo", "device": torch.cuda.get_device_name() if cuda else "cpu",
        "shapes": "tiny check" if args.tiny else "Qwen3-VL 2B (random weights)",
        "dtype": "bfloat16" if cuda else "float32", "prompts_per_step": PROMPTS, "rollouts_per_prompt": GROUP,
        "rounds_per_rollout": ROUNDS, "max_turn_tokens": turn_tokens,
        "parameters_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
        "frozen_vision_b": round(frozen / 1e9, 3), "build_s": round(build_s, 1),
        "peak_cuda_gb": round(max(s["peak_gb"] for s in steps), 1) if cuda else None,
        "update_formula": "update_s = step_s - rollout_phase_s (TRL's scoring, forward, backward, optimizer); "
                          "forward_backward_s: the trainer's timing/update_s (training_step minus the rollout phase)",
        "batching": "batch_sizes: the rollouts' turns in each generate call (turns that arrive while a call runs "
                    "wait for the next)",
        "steps": per_step, "rewards": rewards,
    }


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny model on CPU: checks the script itself")
    parser.add_argument("--turn-tokens", type=int, default=256, help="most tokens a turn samples")
    return run(parser.parse_args())


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
