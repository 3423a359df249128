"""SFT throughput on CPU: the tiny Qwen3-VL trained through our whole path (dataset folder, the agent's
rendering, TRL's SFTTrainer), a baseline for regressions in the data path and the trainer setup.

Rows are agent-shaped: our real system prompt, the task, two image searches with capped pictures, the
final round and the answer (about 3,000 tokens with the tiny tokenizer). Prints JSON: tokens/s, seconds
per step (the first step left out) and the peak resident memory of the process.

    python benchmarks/sft_throughput.py [--steps 20] [--batch 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def build_dataset(folder: Path, rows: int) -> Path:
    from PIL import Image

    from gensearcher.agent import prompts
    from gensearcher.images import prepare_for_policy
    from gensearcher.messages import Message
    from gensearcher.tools.base import PROTOCOL_TOOLS, Toolbox
    from gensearcher.train.dataset import SFTManifest, SFTRow, prepare_out, write_dataset

    store = prepare_out(folder / "data")
    for i in range(4):
        Image.effect_noise((1328, 1000), 30 + 10 * i).convert("RGB").save(folder / f"{i}.png")  # a real photo's size
    refs = [prepare_for_policy(folder / f"{i}.png", store.folder, 160_000) for i in range(4)]
    system = prompts.render_system_prompt(prompts.default_system_template(), date="2026-11-27",
                                          tools=Toolbox(dict.fromkeys(PROTOCOL_TOOLS, None)).schemas_json(), max_refs=5, max_tool_calls=8)
    result = "\n".join(f"IMG_00{i + 1}: title: trophy {i}\n  url: https://img.example.org/{i}.jpg" for i in range(2))
    items = []
    for n in range(rows):
        call = ('<think>Find the trophy.</think>\n<tool_call>\n{"name": "image_search", "arguments": '
                f'{{"query": "trophy {n}"}}}}\n</tool_call>')
        messages = [Message(role="system", text=system), Message(role="user", text=f"The 2026 trophy, poster {n}")]
        for turn in range(2):
            messages += [Message(role="assistant", text=call),
                         Message(role="user", text=f"<tool_response>\n{result}\n</tool_response>",
                                 images=refs[2 * turn: 2 * turn + 2])]
        messages += [Message(role="user", text=prompts.FINAL_ROUND_MESSAGE),
                     Message(role="assistant", text='<think>Done.</think>\n<answer>{"gen_prompt": "The trophy.", '
                                                    '"reference_images": [{"img_id": "IMG_001", "note": "cup"}]}</answer>')]
        items.append(SFTRow(id=str(n), messages=messages, source="trajectory", origin="synthetic"))
    write_dataset(store, items, SFTManifest(max_pixels=160_000))
    return store.root


def main() -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared machine)")
    args = parser.parse_args()
    import torch
    from transformers import TrainerCallback

    from gensearcher.policy.transformers_local import load_processor
    from gensearcher.testing.tiny_models import save_tiny_qwen3_vl
    from gensearcher.train.collator import AgentChatCollator
    from gensearcher.train.config import load_config
    from gensearcher.train.dataset import read_dataset
    from gensearcher.train.sft import train_sft

    torch.set_num_threads(args.threads)
    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *_: object, **__: object) -> None:
            marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        checkpoint = save_tiny_qwen3_vl(folder / "tiny")
        data = build_dataset(folder, args.rows)
        _, rows = read_dataset(data)
        collator = AgentChatCollator(load_processor(str(checkpoint)), max_length=None)
        row_tokens = [int(collator.encode(row.messages)["input_ids"].shape[0]) for row in rows]
        config = load_config(None, {"output_dir": str(folder / "out"), "max_steps": args.steps,
                                    "per_device_train_batch_size": args.batch, "gradient_checkpointing": False,
                                    "save_strategy": "no", "logging_steps": args.steps, "disable_tqdm": True,
                                    "learning_rate": 1e-3})
        started = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # the trainer's log lines; stdout is for the JSON
            record = train_sft(config, model=str(checkpoint), data=data, callbacks=[Clock()])
        total_s = time.perf_counter() - started
    per_step = (marks[-1] - marks[0]) / max(1, len(marks) - 1)
    tokens_per_step = sum(row_tokens) / len(row_tokens) * args.batch
    return {
        "benchmark": "sft_throughput", "device": "cpu", "torch_threads": args.threads, "steps": record.steps,
        "batch": args.batch, "tokens_per_row": round(sum(row_tokens) / len(row_tokens)),
        "images_per_row": len(rows[0].images), "seconds_per_step": round(per_step, 3),
        "tokens_per_s": round(tokens_per_step / per_step, 1), "wall_s_including_load_and_save": round(total_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "final_loss": record.losses[-1] if record.losses else None,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
