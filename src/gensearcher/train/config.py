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
from typing import Any, TypeVar

from trl import GRPOConfig, SFTConfig

from gensearcher.errors import UserError

ConfigT = TypeVar("ConfigT", bound=Any)

# LoRA adapts the language model only; the vision tower stays as it was (frozen, as in the full recipe).
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass
class _ModelFields:
    """How the policy is loaded and which of its weights learn: the same for SFT and GRPO."""

    freeze_vision: bool = field(default=True, metadata={
        "help": "Freeze the vision tower and its projector (the reference recipe); only the language model learns."})
    model_dtype: str = field(default="float32", metadata={
        "help": "dtype the weights are loaded in: float32 (master weights; bf16 autocast does the compute) or "
                "bfloat16 (half the weight memory; pair it with DeepSpeed/FSDP, which keep fp32 master copies)."})
    lora: bool = field(default=False, metadata={"help": "Train a LoRA adapter (peft) instead of the full model."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA path."})
    lora_target_modules: str = field(default=LORA_TARGETS, metadata={
        "help": "Regex of the modules LoRA adapts (default: the language model's attention and MLP projections)."})


@dataclass
class GenSFTConfig(SFTConfig, _ModelFields):
    """`SFTConfig` with the reference recipe's defaults and gensearcher's fields (see the module text)."""

    # --- ours (and _ModelFields) ---------------------------------------------------------------------------
    max_pixels: int = field(default=160_000, metadata={
        "help": "Pixel cap of the training images; must equal the agent's policy.max_pixels. Rows with a larger "
                "image are refused, since the agent never shows such an image."})

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


@dataclass
class GenGRPOConfig(GRPOConfig, _ModelFields):
    """`GRPOConfig` with the reference RL recipe as defaults, plus gensearcher's fields.

    The recipe: 8 prompts x 6 rollouts per optimizer step (per-device batch 6 x 8 accumulation steps on
    one device; divide the accumulation by the device count), clip 0.2 / 0.28, dual clip 3 (`delta`),
    no KL, a token-sum loss normalised per sequence (`dr_grpo`), temperature 0.7, top_p 0.95, lr 1e-6
    constant, 30,000 completion tokens per rollout and 4,096 per turn.
    """

    # --- ours (and _ModelFields) ---------------------------------------------------------------------------
    max_turn_tokens: int = field(default=4096, metadata={"help": "Most tokens the policy writes in one turn."})
    rollout_batch: int = field(default=8, metadata={
        "help": "Most concurrent turns the in-process model generates in one call (1: one at a time)."})
    max_excluded_fraction: float = field(default=0.5, metadata={
        "help": "When more of a step's rollouts than this are excluded (generator, judge or tools down), training "
                "pauses and retries them; after outage_retries it stops with a message instead of taking empty steps."})
    outage_retries: int = field(default=3, metadata={"help": "Pauses before training stops on an outage."})
    outage_backoff_s: float = field(default=30.0, metadata={
        "help": "First pause on an outage in seconds; each further pause doubles it."})

    # --- the reference recipe as defaults ----------------------------------------------------------------
    num_generations: int | None = field(default=6, metadata={"help": "Rollouts per prompt (the group)."})
    per_device_train_batch_size: int = field(default=6, metadata={"help": "Rollouts per device per micro-step."})
    gradient_accumulation_steps: int = field(default=8, metadata={"help": "Micro-steps per optimizer step."})
    learning_rate: float = field(default=1e-6, metadata={"help": "Learning rate (AdamW)."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Learning-rate schedule."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    epsilon: float = field(default=0.2, metadata={"help": "Lower clip of the importance ratio."})
    epsilon_high: float | None = field(default=0.28, metadata={"help": "Upper clip of the importance ratio."})
    delta: float | None = field(default=3.0, metadata={"help": "Dual clip: cap of the ratio for negative advantages."})
    beta: float = field(default=0.0, metadata={"help": "KL coefficient (0: no reference model)."})
    loss_type: str = field(default="dr_grpo", metadata={"help": "Loss aggregation (dr_grpo: token sum per sequence)."})
    scale_rewards: Any = field(default="group", metadata={"help": "Advantage scaling: group, batch or none."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of the rollouts."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling of the rollouts."})
    max_completion_length: int | None = field(default=30_000, metadata={
        "help": "Tokens after the first prompt per rollout: turns, observations and image tokens together."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs over the RL prompts."})
    save_steps: float = field(default=50, metadata={"help": "Save a resumable checkpoint every N steps."})
    save_total_limit: int | None = field(default=5, metadata={"help": "Checkpoints kept."})
    logging_steps: float = field(default=1, metadata={"help": "Log every N optimizer steps."})
    report_to: Any = field(default="tensorboard", metadata={
        "help": "Experiment trackers: tensorboard (default), trackio, wandb, or none."})
    ddp_timeout: int = field(default=10_800, metadata={
        "help": "Seconds a rank waits for the others (a step's rollouts, outage pauses included, can take long)."})

    def __post_init__(self) -> None:
        if self.bf16 is None:
            self.bf16 = _bf16_supported()
        if not _has_accelerator():
            self.dataloader_pin_memory = False
        if self.model_dtype not in ("float32", "bfloat16"):
            raise UserError(f"model_dtype {self.model_dtype!r}: use float32 or bfloat16")
        if not 0 <= self.max_excluded_fraction <= 1:
            raise UserError("max_excluded_fraction must be in [0, 1]")
        if self.use_vllm:
            raise UserError("use_vllm: GRPO rollouts run through the agent loop with in-process generation; vLLM "
                            "generation is not supported yet (docs/training.md says why)")
        self.remove_unused_columns = False  # the task column reaches the rollouts
        super().__post_init__()


_OURS = {
    GenSFTConfig: "freeze_vision, max_pixels, model_dtype, lora, lora_r, lora_alpha, lora_dropout, lora_target_modules",
    GenGRPOConfig: "freeze_vision, model_dtype, lora, lora_r, lora_alpha, lora_dropout, lora_target_modules, "
                   "max_turn_tokens, rollout_batch, max_excluded_fraction, outage_retries, outage_backoff_s",
}


def field_names(config_class: type[Any] = GenSFTConfig) -> set[str]:
    return {f.name for f in dataclasses.fields(config_class) if f.init}


def load_config(path: Path | None, overrides: dict[str, Any], config_class: type[ConfigT] = GenSFTConfig) -> ConfigT:  # type: ignore[assignment]
    """The defaults, then the YAML file, then the flags (None values in `overrides` are left out)."""
    kind = "SFT" if config_class is GenSFTConfig else "GRPO"
    values: dict[str, Any] = {}
    if path is not None:
        values.update(_read_yaml(path))
    values.update({key: value for key, value in overrides.items() if value is not None})
    unknown = sorted(set(values) - field_names(config_class))
    if unknown:
        raise UserError(f"unknown {kind} config field(s): {', '.join(unknown)} (any {kind}Config field or ours: "
                        f"{_OURS[config_class]})")
    if "output_dir" not in values:
        raise UserError("the output folder is not set (--out)")
    try:
        with warnings.catch_warnings():
            # transformers 5.2x renames gradient_checkpointing (TRL's default, True) and warns on every run.
            warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated", category=FutureWarning)
            return config_class(**values)
    except (TypeError, ValueError) as exc:
        raise UserError(f"invalid {kind} config: {exc}") from None


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
