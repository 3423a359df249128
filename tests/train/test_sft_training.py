"""SFTTrainer mechanics on the tiny Qwen3-VL: frozen vision tower, resume, LoRA, config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gensearcher.config import PolicyConfig
from gensearcher.errors import UserError
from gensearcher.messages import Message
from gensearcher.policy.transformers_local import TransformersPolicy, load_processor
from gensearcher.train.collator import AgentChatCollator
from gensearcher.train.config import load_config
from gensearcher.train.dataset import ImageStore, SFTManifest, rows_from_runs, write_dataset
from gensearcher.train.sft import freeze_vision, train_sft

FAST = {"learning_rate": 1e-2, "per_device_train_batch_size": 2, "gradient_checkpointing": False,
        "lr_scheduler_type": "constant", "warmup_steps": 0, "logging_steps": 1, "disable_tqdm": True}


@pytest.fixture(autouse=True)
def one_thread():
    # Two threads per process spin against each other on a small shared machine (5-10x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(recorded, tmp_path_factory):
    store = ImageStore(tmp_path_factory.mktemp("sft-data"))
    rows, skipped = rows_from_runs([recorded], store)
    write_dataset(store, rows, SFTManifest(skipped=skipped))
    return store.root


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_the_frozen_vision_tower_gets_no_gradient(dataset, tiny_checkpoint):
    from transformers import AutoModelForImageTextToText

    from gensearcher.train.dataset import read_dataset

    model = AutoModelForImageTextToText.from_pretrained(tiny_checkpoint)
    frozen = freeze_vision(model)
    _, rows = read_dataset(dataset)
    batch = AgentChatCollator(load_processor(str(tiny_checkpoint)), max_length=None)(
        [{"messages": [m.model_dump() for m in row.messages]} for row in rows])
    assert batch["pixel_values"].shape[0] > 0  # the images really went through the tower
    model(**batch).loss.backward()
    vision = {n: p for n, p in model.named_parameters() if ".visual." in n}
    assert vision and frozen == sum(p.numel() for p in vision.values())
    assert all(p.grad is None and not p.requires_grad for p in vision.values())
    language = [p for n, p in model.named_parameters() if "language_model" in n]
    assert all(p.grad is not None for p in language) and any(p.grad.abs().sum() > 0 for p in language)


def test_full_fine_tune_resumes_from_its_checkpoint(dataset, tiny_checkpoint, tmp_path):
    out = tmp_path / "ckpt"
    first = train_sft(load_config(None, {**FAST, "output_dir": str(out), "max_steps": 2, "save_steps": 2}),
                      model=str(tiny_checkpoint), data=dataset)
    assert first.steps == 2 and (out / "checkpoint-2").is_dir()
    base, tuned = weights(tiny_checkpoint), weights(out)
    visual = [k for k in base if ".visual." in k]
    assert visual and all(torch.equal(base[k], tuned[k]) for k in visual)  # the tower and projector stayed as they were
    assert any(not torch.equal(base[k], tuned[k]) for k in base if "language_model" in k)

    resumed = train_sft(load_config(None, {**FAST, "output_dir": str(out), "max_steps": 4, "save_steps": 2}),
                        model=str(tiny_checkpoint), data=dataset, resume=True)
    assert resumed.resumed_from.endswith("checkpoint-2") and resumed.steps == 4
    assert len(resumed.losses) == 4 and resumed.losses[:2] == first.losses  # steps 1-2 come from the checkpoint
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [1, 2, 3, 4]
    record = json.loads((out / "training.json").read_text())
    assert record["steps"] == 4 and record["dataset_rows"] == 2 and record["versions"]["trl"]


async def test_lora_trains_an_adapter_and_saves_a_merged_checkpoint(dataset, tiny_checkpoint, tmp_path):
    pytest.importorskip("peft")
    out = tmp_path / "lora"
    record = train_sft(load_config(None, {**FAST, "output_dir": str(out), "max_steps": 3, "save_strategy": "no",
                                          "lora": True, "lora_r": 4}), model=str(tiny_checkpoint), data=dataset)
    assert record.lora and 0 < record.trainable_parameters < 20_000
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and "language_model" in adapter["target_modules"]
    base, merged = weights(tiny_checkpoint), weights(out)
    assert set(merged) == set(base)  # a plain checkpoint, no adapter keys left
    changed = [k for k in base if not torch.equal(base[k], merged[k])]
    assert changed and all("language_model" in k and "proj" in k for k in changed)
    policy = TransformersPolicy(PolicyConfig(model=str(out), temperature=0.0))
    response = await policy.complete([Message(role="user", text="A poster")], max_tokens=4)
    assert response.completion_token_ids


def test_config_errors_are_user_errors(tmp_path):
    (tmp_path / "bad.yaml").write_text("learning_rate: 0.1\nno_such_field: 3\n")
    with pytest.raises(UserError, match="no_such_field"):
        load_config(tmp_path / "bad.yaml", {"output_dir": str(tmp_path)})
    with pytest.raises(UserError, match="assistant turns"):
        load_config(None, {"output_dir": str(tmp_path), "assistant_only_loss": True})
    (tmp_path / "recipe.yaml").write_text("num_train_epochs: 3\nlearning_rate: 0.5\n")
    config = load_config(tmp_path / "recipe.yaml", {"output_dir": str(tmp_path), "learning_rate": 2e-5})
    assert config.num_train_epochs == 3 and config.learning_rate == 2e-5  # the flag wins over the file
    defaults = load_config(None, {"output_dir": str(tmp_path)})
    assert (defaults.learning_rate, defaults.num_train_epochs, defaults.lr_scheduler_type.value, defaults.warmup_steps,
            defaults.max_length, defaults.max_pixels, defaults.freeze_vision, defaults.lora) == (
        1e-5, 2.0, "cosine", 0.02, 32_768, 160_000, True, False)


def test_images_above_the_agent_cap_are_refused(dataset, tiny_checkpoint, tmp_path):
    with pytest.raises(UserError, match="exceed max_pixels=100"):
        train_sft(load_config(None, {**FAST, "output_dir": str(tmp_path), "max_pixels": 100}),
                  model=str(tiny_checkpoint), data=dataset)


def test_shipped_launch_configs_load():
    from importlib import resources

    from accelerate.commands.config.config_args import ClusterConfig
    from transformers.models.qwen3_vl import modeling_qwen3_vl

    folder = resources.files("gensearcher.train").joinpath("accelerate")
    zero3 = ClusterConfig.from_yaml_file(str(folder / "zero3.yaml"))
    assert zero3.distributed_type == "DEEPSPEED" and zero3.deepspeed_config["zero_stage"] == 3
    fsdp = ClusterConfig.from_yaml_file(str(folder / "fsdp2.yaml"))
    assert fsdp.fsdp_config["fsdp_version"] == 2
    for name in fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(","):
        assert hasattr(modeling_qwen3_vl, name)  # the shard units exist in the model code
    recipe = load_config(Path(str(folder / "sft-8b.yaml")), {"output_dir": "ckpt"})
    assert recipe.learning_rate == 1e-5 and recipe.dataloader_num_workers == 4 and recipe.max_length == 32_768
    assert recipe.bf16 == (torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def test_cli_reports_a_missing_dataset_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "gensearcher", "train", "sft", "--model", "m", "--data", "nowhere",
                             "--out", "ckpt"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
                            check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: nowhere is not an SFT dataset folder")
    assert "Traceback" not in result.stderr
