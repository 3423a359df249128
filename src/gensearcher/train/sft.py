"""Supervised fine-tuning of the policy with TRL's `SFTTrainer` (no training loop of our own).

    train_sft(config, model="Qwen/Qwen3-VL-8B-Instruct", data=Path("data/sft"))

The rows are rendered by the agent's own code (`train.collator`), the vision tower and projector are
frozen by default, LoRA (peft) is an option. The output folder is a complete Hugging Face checkpoint
(model, processor, chat template) that `vllm serve` and our in-process backend load, plus
`training.json`: the data and configuration it was trained on. Multi-GPU runs go through
`accelerate launch --config_file src/gensearcher/train/accelerate/<zero3|fsdp2>.yaml -m gensearcher ...`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import platform
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from gensearcher import __version__
from gensearcher._files import write_atomic
from gensearcher.errors import UserError
from gensearcher.train.collator import AgentChatCollator, RenderError
from gensearcher.train.config import GenGRPOConfig, GenSFTConfig
from gensearcher.train.dataset import MANIFEST_FILE, ROWS_FILE, SFTRow, read_dataset

logger = logging.getLogger(__name__)

RECORD_FILE = "training.json"
VISION_MODULES = ("visual", "vision_tower", "vision_model", "multi_modal_projector", "mm_projector")


class TrainingRecord(BaseModel):
    """`training.json` beside the checkpoint: what it was trained from and how."""

    base_model: str = Field(..., description="The model id or folder training started from.")
    data: str = Field(..., description="The SFT dataset folder.")
    dataset_rows: int
    dataset_sha256: str = Field(..., description="sha256 of the dataset's rows.jsonl and manifest.json.")
    lora: bool
    trainable_parameters: int
    frozen_parameters: int
    steps: int = Field(..., description="Optimizer steps done (counting those before a resume).")
    train_loss: float | None = Field(None, description="Mean training loss reported by the trainer.")
    losses: list[float] = Field(default_factory=list, description="Logged losses, in order.")
    truncated_rows: int = Field(0, description="Rows cut at max_length (their tail was not trained).")
    resumed_from: str | None = None
    config: dict[str, Any] = Field(..., description="Every SFTConfig field as TRL reports it (hub token masked).")
    versions: dict[str, str]
    started_at: str
    finished_at: str


def train_sft(config: GenSFTConfig, *, model: str, data: Path, resume: bool = False,
              callbacks: list[Any] | None = None) -> TrainingRecord:
    """Fine-tune `model` on the dataset folder `data`; writes the checkpoint to `config.output_dir`.

    `callbacks` are extra `transformers.TrainerCallback`s (progress reporting, timing).
    """
    started = _dt.datetime.now(_dt.UTC).isoformat()
    _, rows = read_dataset(data)
    if not rows:
        raise UserError(f"{data} holds no rows")
    check_pixels(rows, config.max_pixels)
    policy, processor = load_for_training(model, config)
    collator = AgentChatCollator(processor, max_length=config.max_length)
    try:
        collator.encode(rows[0].messages)  # a template the mask cannot be built from fails before training
    except RenderError as exc:
        raise UserError(f"cannot render {data} for {model}: {exc}") from None
    frozen = freeze_vision(policy) if config.freeze_vision and not config.lora else 0
    trainer = build_trainer(policy, processor, collator, rows, config)
    for callback in callbacks or []:
        trainer.add_callback(callback)
    output_dir = Path(str(config.output_dir))  # always set by load_config
    resume_from = _checkpoint_to_resume(output_dir) if resume else None
    result = trainer.train(resume_from_checkpoint=resume_from)
    out = output_dir
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)  # before a LoRA merge
    save_checkpoint(trainer, processor, out, lora=config.lora)
    record = TrainingRecord(
        base_model=model, data=str(data.resolve()), dataset_rows=len(rows), dataset_sha256=_dataset_digest(data),
        lora=config.lora, trainable_parameters=trainable, frozen_parameters=frozen,
        steps=trainer.state.global_step, train_loss=result.training_loss,
        losses=[entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
        truncated_rows=collator.truncated, resumed_from=resume_from, config=_config_record(config),
        versions=_versions(), started_at=started, finished_at=_dt.datetime.now(_dt.UTC).isoformat(),
    )
    if trainer.is_world_process_zero():
        write_atomic(out / RECORD_FILE, record.model_dump_json(indent=2).encode("utf-8"))
    return record


def check_pixels(rows: list[SFTRow], max_pixels: int) -> None:
    """Refuse images larger than the agent's cap: the policy would never see them so."""
    over = [(row.id, image) for row in rows for image in row.images if image.width * image.height > max_pixels]
    if over:
        row_id, image = over[0]
        raise UserError(f"{len(over)} image(s) exceed max_pixels={max_pixels} (e.g. row {row_id}: "
                        f"{image.width}x{image.height}); re-import with the same cap the agent uses")


def load_for_training(source: str, config: GenSFTConfig | GenGRPOConfig) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForImageTextToText

    from gensearcher.policy.transformers_local import load_processor

    local = Path(source).expanduser()
    name = str(local) if local.exists() else source
    try:
        model = AutoModelForImageTextToText.from_pretrained(name, dtype=getattr(torch, config.model_dtype))
        processor = load_processor(name)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load the model {source!r}: {exc}") from None
    return model, processor


def freeze_vision(model: Any) -> int:
    """Freeze every parameter of the vision tower and projector; returns how many were frozen."""
    frozen: dict[int, Any] = {}
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in VISION_MODULES:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
                frozen[id(parameter)] = parameter
    if not frozen:
        raise UserError("no vision tower found to freeze; set freeze_vision: false to train every parameter")
    return sum(p.numel() for p in frozen.values())


def build_trainer(model: Any, processor: Any, collator: AgentChatCollator, rows: list[SFTRow], config: GenSFTConfig) -> Any:
    """TRL's SFTTrainer over `rows` with our collator (and a LoRA adapter when `config.lora`)."""
    from datasets import Dataset
    from trl import SFTTrainer

    dataset = Dataset.from_list([
        {"messages": json.dumps([m.model_dump() for m in row.messages], ensure_ascii=False),
         "images": [image.path for image in row.images]}
        for row in rows
    ])
    return SFTTrainer(model=model, args=config, data_collator=collator, train_dataset=dataset,
                      processing_class=processor, peft_config=lora_config(config))


def lora_config(config: GenSFTConfig | GenGRPOConfig) -> Any:
    """The peft `LoraConfig` the configuration asks for, or None for a full fine-tune."""
    if not config.lora:
        return None
    try:
        from peft import LoraConfig
    except ImportError:
        raise UserError("--lora needs peft: pip install 'gensearcher[train]'") from None
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.lora_target_modules, task_type="CAUSAL_LM")


def _checkpoint_to_resume(out: Path) -> str:
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    if last is None:
        raise UserError(f"--resume: no checkpoint-N folder in {out} to resume from")
    return last


def save_checkpoint(trainer: Any, processor: Any, out: Path, *, lora: bool) -> None:
    """Write a complete checkpoint to `out`: merged weights (LoRA: also the adapter in out/adapter)."""
    if lora:
        trainer.save_model(str(out / "adapter"))
        if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
            # Sharded weights cannot be merged on one rank; the adapter is the output of such a run.
            logger.warning("LoRA under DeepSpeed/FSDP: saved the adapter in %s; merge it on one device", out / "adapter")
            return
        if trainer.is_world_process_zero():
            merged = trainer.model.merge_and_unload()
            merged.save_pretrained(str(out))
    else:
        trainer.save_model(str(out))  # gathers sharded (ZeRO-3 / FSDP) weights on the main process
    if trainer.is_world_process_zero():
        save_processor(processor, out)


def save_processor(processor: Any, out: Path) -> None:
    """The processor as a stock checkpoint names it (tokenizer, chat template, image processor).

    Our image-only stand-in (no torchvision) is saved as its parts, so its class name never lands in the
    checkpoint: a machine with torchvision then loads the stock Qwen3-VL processor from it.
    """
    if type(processor).__name__ != "ImageOnlyProcessor":
        processor.save_pretrained(str(out))
        return
    (out / "processor_config.json").unlink(missing_ok=True)
    processor.tokenizer.save_pretrained(str(out))
    processor.image_processor.save_pretrained(str(out))
    config_path = out / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text(encoding="utf-8"))
    if tokenizer_config.get("processor_class") == "ImageOnlyProcessor":
        tokenizer_config.pop("processor_class")
        write_atomic(config_path, json.dumps(tokenizer_config, indent=2, ensure_ascii=False).encode("utf-8"))


def _dataset_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in (ROWS_FILE, MANIFEST_FILE):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def _config_record(config: GenSFTConfig | GenGRPOConfig) -> dict[str, Any]:
    values = json.loads(json.dumps(config.to_dict(), default=str))
    for key in ("hub_token", "push_to_hub_token"):
        if values.get(key):
            values[key] = "***"
    return values


def _versions() -> dict[str, str]:
    import torch
    import transformers
    import trl

    versions = {"gensearcher": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__, "trl": trl.__version__}
    try:
        import peft

        versions["peft"] = peft.__version__
    except ImportError:
        pass
    return versions
