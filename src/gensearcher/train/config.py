"""The SFT configuration: TRL's `SFTConfig` with the reference recipe as defaults, plus our fields.

Defaults follow the reference system's recipe for Qwen3-VL-8B-Instruct (full fine-tune, vision tower and
projector frozen, lr 1e-5, 2 epochs, cosine, warmup 2%, weight decay 1e-6, cutoff 32,768 tokens, bf16
where the hardware has it, per-device batch 1, images at the agent's cap of 160,000 pixels).

A YAML file (`--config sft.yaml`) may set any `SFTConfig` / `TrainingArguments` field and ours; command
line flags override it. Two TRL fields are ours to decide: the loss is always on assistant turns only
(our collator builds the mask from the agent's own rendering, so TRL's `assistant_only_loss`, which swaps
in a different chat template, stays off), and `remove_unused_columns` keeps the conversation columns.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import SFTConfig

from gensearcher.errors import UserError

# LoRA adapts the language model only; the vision tower stays as it was (frozen, as in the full recipe).
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass
class GenSFTConfig(SFTConfig):
    """`SFTConfig` with the reference recipe's defaults and gensearcher's fields (see the module text)."""

    # --- ours ------------------------------------------------------------------------------------------------
    freeze_vision: bool = field(default=True, metadata={
        "help": "Freeze the vision tower and its projector (the reference recipe); only the language model learns."})
    max_pixels: int = field(default=160_000, metadata={
        "help": "Pixel cap of the training images; must equal the agent's policy.max_pixels. Rows with a larger "
                "image are refused, since the agent never shows such an image."})
    model_dtype: str = field(default="float32", metadata={
        "help": "dtype the weights are loaded in: float32 (master weights; bf16 autocast does the compute) or "
                "bfloat16 (half the weight memory; pair it with DeepSpeed/FSDP, which keep fp32 master copies)."})
    lora: bool = field(default=False, metadata={"help": "Train a LoRA adapter (peft) instead of the full model."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA path."})
    lora_target_modules: str = field(default=LORA_TARGETS, metadata={
        "help": "Regex of the modules LoRA adapts (default: the language model's attention and MLP projections)."})

    # --- the reference recipe as defaults ----------------------------------------------------------------
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate (AdamW)."})
    num_train_epochs: float = field(default=2.0, metadata={"help": "Epochs over the dataset."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    warmup_steps: float = field(default=0.02, metadata={"help": "Warmup: steps, or a share of all steps if < 1."})
    weight_decay: float = field(default=1e-6, metadata={"help": "AdamW weight decay."})
    max_length: int | None = field(default=32_768, metadata={
        "help": "Cutoff in tokens; a longer row is cut at an image boundary and its tail is not trained."})
    per_device_train_batch_size: int = field(default=1, metadata={"help": "Rows per device per step."})
    save_steps: float = field(default=1000, metadata={"help": "Save a resumable checkpoint every N steps."})
    save_total_limit: int | None = field(default=30, metadata={"help": "Checkpoints kept."})
    report_to: Any = field(default="none", metadata={"help": "Experiment trackers (none, wandb, tensorboard)."})

    def __post_init__(self) -> None:
        if self.bf16 is None:
            self.bf16 = _bf16_supported()
        if not _has_accelerator():
            self.dataloader_pin_memory = False  # pinning needs a device to copy to
        if self.assistant_only_loss:
            raise UserError("assistant_only_loss: the loss is always on assistant turns (our collator masks them); "
                            "leave the TRL field unset")
        if self.model_dtype not in ("float32", "bfloat16"):
            raise UserError(f"model_dtype {self.model_dtype!r}: use float32 or bfloat16")
        if self.max_pixels < 1:
            raise UserError("max_pixels must be positive")
        super().__post_init__()


def _bf16_supported() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def _has_accelerator() -> bool:
    import torch

    return bool(torch.accelerator.is_available())


def field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(GenSFTConfig) if f.init}


def load_config(path: Path | None, overrides: dict[str, Any]) -> GenSFTConfig:
    """The defaults, then the YAML file, then the flags (None values in `overrides` are left out)."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(_read_yaml(path))
    values.update({key: value for key, value in overrides.items() if value is not None})
    unknown = sorted(set(values) - field_names())
    if unknown:
        raise UserError(f"unknown SFT config field(s): {', '.join(unknown)} (any SFTConfig field or ours: "
                        "freeze_vision, max_pixels, model_dtype, lora, lora_r, lora_alpha, lora_dropout, "
                        "lora_target_modules)")
    if "output_dir" not in values:
        raise UserError("the output folder is not set (--out)")
    try:
        with warnings.catch_warnings():
            # transformers 5.2x renames gradient_checkpointing (TRL's default, True) and warns on every run.
            warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated", category=FutureWarning)
            return GenSFTConfig(**values)
    except (TypeError, ValueError) as exc:
        raise UserError(f"invalid SFT config: {exc}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping of config fields")
    return data
