"""`gensearcher train sft`: supervised fine-tuning of the policy over TRL."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from gensearcher.cli import _guarded, app

train_app = typer.Typer(no_args_is_help=True, help="Train the policy over TRL: SFT, then GRPO.")
app.add_typer(train_app, name="train")


@train_app.command("sft")
def sft(
    model: Annotated[str, typer.Option("--model", help="A Qwen3-VL-family checkpoint folder or model id.")],
    data: Annotated[Path, typer.Option("--data", help="The SFT dataset folder (gensearcher data ...).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: checkpoints, then the final model.")],
    config: Annotated[Path | None, typer.Option("--config", help="YAML of SFTConfig fields and ours.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after N optimizer steps (overrides epochs).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs over the data (default 2).")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Peak learning rate (default 1e-5).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Rows per device per step (default 1).")] = None,
    save_steps: Annotated[int | None, typer.Option(help="Save a resumable checkpoint every N steps.")] = None,
    lora: Annotated[bool | None, typer.Option("--lora/--full", help="Train a LoRA adapter instead of all weights.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in --out.")] = False,
) -> None:
    """Fine-tune the policy on an SFT dataset; the output loads in `gensearcher research` and `vllm serve`.

    Examples:
        gensearcher train sft --model Qwen/Qwen3-VL-8B-Instruct --data data/sft --out ckpt/sft
        accelerate launch --config_file src/gensearcher/train/accelerate/zero3.yaml -m gensearcher \\
            train sft --model Qwen/Qwen3-VL-8B-Instruct --data data/sft --out ckpt/sft
    """

    def body() -> int:
        from gensearcher.train.config import load_config
        from gensearcher.train.sft import train_sft

        overrides = {"output_dir": str(out), "max_steps": max_steps, "num_train_epochs": epochs,
                     "learning_rate": learning_rate, "per_device_train_batch_size": batch_size,
                     "save_steps": save_steps, "lora": lora}
        # The trainer prints its progress and losses on stdout; stdout is for the result.
        with contextlib.redirect_stdout(sys.stderr):
            record = train_sft(load_config(config, overrides), model=model, data=data, resume=resume)
        typer.echo(f"trained {record.steps} steps (loss {record.train_loss:.4f}); checkpoint in {out}", err=True)
        typer.echo(record.model_dump_json(include={"steps", "train_loss", "losses", "trainable_parameters",
                                                   "frozen_parameters", "lora", "truncated_rows"}, indent=2))
        return 0

    raise typer.Exit(_guarded(body))


@train_app.command("grpo")
def grpo(
    model: Annotated[str, typer.Option("--model", help="The policy to start from (an SFT checkpoint folder).")],
    data: Annotated[Path, typer.Option("--data", help="RL prompts: a `data import-rl` folder or a KnowGen-format file.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: checkpoints, rollouts/, rewards.jsonl, the model.")],
    config: Annotated[Path | None, typer.Option("--config", help="YAML of GRPOConfig fields and ours.")] = None,
    settings_file: Annotated[Path | None, typer.Option(
        "--settings", help="gensearcher settings (TOML) for the tools, generator and judge.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after N optimizer steps.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Learning rate (default 1e-6).")] = None,
    num_generations: Annotated[int | None, typer.Option(help="Rollouts per prompt (default 6).")] = None,
    save_steps: Annotated[int | None, typer.Option(help="Save a resumable checkpoint every N steps.")] = None,
    system_prompt_file: Annotated[Path | None, typer.Option(help="The agent's system prompt template.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in --out.")] = False,
) -> None:
    """Agentic RL: rollouts of the research agent, rendered and judged against the ground truth, update the policy.

    Every rollout is our agent loop (tools, protocol, final round) with the trained model as its policy;
    the reward is the KnowGen judge on the rendered answer (blended with the text judge when
    GEN_REWARD_TEXT_COEF > 0). Rollouts hit by an outage are left out of the update, not scored 0.

    Examples:
        gensearcher train grpo --model ckpt/sft --data data/rl --out ckpt/grpo
        accelerate launch --config_file src/gensearcher/train/accelerate/zero3.yaml -m gensearcher \\
            train grpo --model ckpt/sft --data data/rl --out ckpt/grpo --config grpo.yaml
    """

    def body() -> int:
        from gensearcher.config import load_settings
        from gensearcher.train.config import GenGRPOConfig, load_config
        from gensearcher.train.grpo import train_grpo

        overrides = {"output_dir": str(out), "max_steps": max_steps, "learning_rate": learning_rate,
                     "num_generations": num_generations, "save_steps": save_steps}
        grpo_config = load_config(config, overrides, GenGRPOConfig)
        settings = load_settings(config_file=settings_file)
        with contextlib.redirect_stdout(sys.stderr):
            record = train_grpo(grpo_config, model=model, data=data, settings=settings, resume=resume,
                                system_prompt_file=system_prompt_file)
        typer.echo(f"trained {record.steps} GRPO steps; checkpoint in {out}, rollouts in {out / 'rollouts'}", err=True)
        typer.echo(record.model_dump_json(include={"steps", "rewards", "excluded_fraction", "prompts"}, indent=2))
        return 0

    raise typer.Exit(_guarded(body))
