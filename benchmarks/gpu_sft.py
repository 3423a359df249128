"""SFT cost on one GPU: a Qwen3-VL at 2B shapes (random weights), 20 steps of ~8k-token rows with images.

Runs our own path (the agent's rendering in `train.collator`, TRL's SFTTrainer, frozen vision tower) in
bf16 autocast with fp32 master weights, gradient checkpointing, batch 1; reports tokens/s, seconds per step
and peak GPU memory, and the memory model of the 8B full fine-tune on 8 x 80 GB (ZeRO-3 / FSDP2), with the
activation term calibrated from this run. Sized to finish in about 8 minutes on one H100/H200.

    python benchmarks/gpu_sft.py                  # on cuda
    python benchmarks/gpu_sft.py --tiny           # a toy-sized check that runs anywhere (CPU)
    python benchmarks/gpu_sft.py --memory-model   # only the 8B estimate (no training)

A bare GPU machine has torch and transformers but not TRL or datasets, nor this package's pydantic stack.
Carry them as wheels (see the device notes): here, in the repo root,
    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
        -d .whl trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 pydantic==2.14.4 \\
        pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 pydantic-settings==2.16.3 \\
        python-dotenv==1.2.4 json5==0.17.3
and there:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
        PYTHONPATH=/tmp/site:$PWD/src python3 benchmarks/gpu_sft.py > $OUT/gpu_sft.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

VOCAB = 151_936
# Qwen3-VL-2B-Instruct's shapes (text 28 x 2048, vision 24 x 1024) and Qwen3-VL-8B-Instruct's (36 x 4096, 27 x 1152).
TEXT_2B = {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16,
           "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": True}
VISION_2B = {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16, "out_hidden_size": 2048,
             "deepstack_visual_indexes": [5, 11, 17], "num_position_embeddings": 2304}
TEXT_8B = {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36, "num_attention_heads": 32,
           "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": False}
VISION_8B = {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16, "out_hidden_size": 4096,
             "deepstack_visual_indexes": [8, 16, 24], "num_position_embeddings": 2304}
TEXT_TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 16, "tie_word_embeddings": True}
VISION_TINY = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
               "deepstack_visual_indexes": [0, 1], "num_position_embeddings": 64}


def qwen3_vl_config(text: dict, vision: dict, tokenizer, vocab: int):  # type: ignore[no-untyped-def]
    from transformers import Qwen3VLConfig

    ids = tokenizer.convert_tokens_to_ids
    half = text["head_dim"] // 2
    section = [half - 2 * (half * 5 // 16), half * 5 // 16, half * 5 // 16]  # t, h, w: 24/20/20 at head_dim 128
    return Qwen3VLConfig(
        text_config={**text, "vocab_size": vocab, "max_position_embeddings": 32_768, "pad_token_id": tokenizer.pad_token_id,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 5e6, "mrope_section": section,
                                         "mrope_interleaved": True}},
        vision_config={**vision, "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=text["tie_word_embeddings"])


def parameter_counts(config) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(all, trainable with the vision tower frozen), counted on the meta device (no memory)."""
    from transformers import Qwen3VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen3VLForConditionalGeneration(config)
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for p in model.model.visual.parameters())
    return total, total - vision


def memory_model(total: int, trainable: int, gpus: int, tokens: int, hidden: int, layers: int,
                 activation_bytes_per_token_layer_hidden: float | None = None) -> dict[str, float]:
    """GB per GPU of a sharded (ZeRO-3 / FSDP2 full-shard) fine-tune with fp32 master weights and Adam."""
    gb = 2**30
    states = {"bf16_weights": 2 * total / gpus / gb, "fp32_master": 4 * trainable / gpus / gb,
              "adam_moments": 8 * trainable / gpus / gb, "bf16_grads": 2 * trainable / gpus / gb}
    checkpoints = 2 * tokens * hidden * layers / gb  # bf16 layer inputs kept by gradient checkpointing
    # One layer's recomputed activations: ~20 bf16 values per token and hidden unit unless calibrated.
    per = activation_bytes_per_token_layer_hidden or 40.0
    recompute = per * tokens * hidden / gb
    out = {key: round(value, 1) for key, value in states.items()}
    out.update(states_total=round(sum(states.values()), 1), checkpointed_inputs=round(checkpoints, 1),
               one_layer_recompute=round(recompute, 1),
               total=round(sum(states.values()) + checkpoints + recompute + 2.0, 1), buffers_and_slack=2.0)
    return out


def synthetic_rows(tokens: int, images_per_turn: int, image_side: int, folder: Path, tokenizer) -> list:  # type: ignore[no-untyped-def]
    """Agent-shaped conversations (tool calls, image results, final answer) of about `tokens` tokens."""
    from PIL import Image

    from gensearcher.images import prepare_for_policy
    from gensearcher.messages import Message
    from gensearcher.train.dataset import SFTRow

    refs = []
    for i in range(images_per_turn * 4):
        Image.effect_noise((image_side, image_side), 40 + i).convert("RGB").save(folder / f"{i}.png")
        refs.append(prepare_for_policy(folder / f"{i}.png", folder / "policy", 160_000))
    filler_unit = "the stadium poster shows the winner lifting the silver trophy in 2026 "
    per_unit = len(tokenizer.encode(filler_unit, add_special_tokens=False))
    image_tokens = sum((r.width // 32) * (r.height // 32) for r in refs)
    units = max(1, (tokens - image_tokens - 400) // (per_unit * 5))
    call = '<think>Look it up.</think>\n<tool_call>\n{"name": "image_search", "arguments": {"query": "trophy"}}\n</tool_call>'
    messages = [Message(role="system", text="You research pictures. " + filler_unit * units),
                Message(role="user", text="A poster of the 2026 winner")]
    for turn in range(4):
        messages.append(Message(role="assistant", text=call))
        messages.append(Message(role="user", text="<tool_response>\n" + filler_unit * units + "\n</tool_response>",
                                images=refs[turn * images_per_turn:(turn + 1) * images_per_turn]))
    messages.append(Message(role="assistant", text='<answer>{"gen_prompt": "The winner.", "reference_images": '
                                                   '[{"img_id": "IMG_001", "note": "the cup"}]}</answer>'))
    return [SFTRow(id=str(i), messages=messages, source="trajectory", origin="synthetic") for i in range(8)]


def main() -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy shapes, 2 steps, CPU: checks the script itself")
    parser.add_argument("--memory-model", action="store_true", help="only the 8B estimate")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=8192)
    args = parser.parse_args()
    from gensearcher.testing.tiny_models import qwen3_vl_chat_template, tiny_tokenizer

    tokenizer = tiny_tokenizer(qwen3_vl_chat_template())
    total8, train8 = parameter_counts(qwen3_vl_config(TEXT_8B, VISION_8B, tokenizer, VOCAB))
    report: dict[str, object] = {"benchmark": "gpu_sft", "memory_model_8b_full_ft_8x80gb": {
        "parameters_b": round(total8 / 1e9, 2), "trainable_b": round(train8 / 1e9, 2),
        "at_32k_tokens": memory_model(total8, train8, 8, 32_768, 4096, 36),
        "at_8k_tokens": memory_model(total8, train8, 8, 8192, 4096, 36), "measured": False,
        "note": "GB per GPU, estimated; TRL's fused LM head never builds the full 151,936-wide logits, so they "
                "are left out; a single 80 GB GPU cannot hold the full fine-tune's states (~130 GB): use LoRA"}}
    if args.memory_model:
        return report
    report.update(run(args, tokenizer))
    calibrated = report.get("activation_bytes_per_token_layer_hidden")
    if calibrated:
        report["memory_model_8b_full_ft_8x80gb"]["at_32k_tokens_calibrated"] = memory_model(  # type: ignore[index]
            total8, train8, 8, 32_768, 4096, 36, float(calibrated))
    return report


def run(args: argparse.Namespace, tokenizer) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from transformers import Qwen3VLForConditionalGeneration, TrainerCallback
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from gensearcher.policy.transformers_local import load_processor
    from gensearcher.train.collator import AgentChatCollator
    from gensearcher.train.config import GenSFTConfig
    from gensearcher.train.sft import build_trainer, freeze_vision

    cuda = torch.cuda.is_available() and not args.tiny
    text, vision, vocab = (TEXT_TINY, VISION_TINY, len(tokenizer)) if args.tiny else (TEXT_2B, VISION_2B, VOCAB)
    steps, tokens = (2, 512) if args.tiny else (args.steps, args.tokens)
    config = qwen3_vl_config(text, vision, tokenizer, vocab)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        Qwen2VLImageProcessorPil(patch_size=16, temporal_patch_size=2, merge_size=2,
                                 size={"shortest_edge": 32 * 32, "longest_edge": 16_777_216}).save_pretrained(folder)
        processor = load_processor(str(folder))
        rows = synthetic_rows(tokens, 2 if args.tiny else 5, 96 if args.tiny else 640, folder, tokenizer)
        started = time.perf_counter()
        with torch.device("cuda" if cuda else "cpu"):
            model = Qwen3VLForConditionalGeneration(config)
        build_s = time.perf_counter() - started
        frozen = freeze_vision(model)
        collator = AgentChatCollator(processor, max_length=32_768)
        row_tokens = int(collator.encode(rows[0].messages)["input_ids"].shape[0])
        sft = GenSFTConfig(output_dir=str(folder / "out"), max_steps=steps, per_device_train_batch_size=1,
                           gradient_checkpointing=True, bf16=cuda, save_strategy="no", logging_steps=5,
                           report_to="none", disable_tqdm=True, learning_rate=1e-5, use_cpu=not cuda)
        trainer = build_trainer(model, processor, collator, rows, sft)

        marks: list[float] = []

        class Clock(TrainerCallback):
            def on_step_end(self, *_: object, **__: object) -> None:
                if cuda:
                    torch.cuda.synchronize()
                marks.append(time.perf_counter())

        trainer.add_callback(Clock())
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with contextlib.redirect_stdout(sys.stderr):  # the trainer's log lines; stdout is for the JSON
            trainer.train()
    timed = marks[-1] - marks[0]  # the first step (warm-up, allocator) is left out
    per_step = timed / max(1, len(marks) - 1)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    result: dict[str, object] = {
        "device": torch.cuda.get_device_name() if cuda else "cpu", "shapes": "tiny check" if args.tiny else "Qwen3-VL 2B",
        "parameters_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
        "frozen_vision_b": round(frozen / 1e9, 3), "tokens_per_row": row_tokens, "steps": steps, "build_s": round(build_s, 1),
        "seconds_per_step": round(per_step, 3), "tokens_per_s": round(row_tokens / per_step, 1),
        "peak_gpu_gb": round(peak / 2**30, 1) if peak else None, "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
    }
    if peak:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        states = 4 * sum(p.numel() for p in model.parameters()) + 12 * trainable  # fp32 weights, grads, Adam
        activations = max(0, peak - states - 2 * row_tokens * text["hidden_size"] * text["num_hidden_layers"])
        result["activation_bytes_per_token_layer_hidden"] = round(activations / (row_tokens * text["hidden_size"]), 1)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
