"""Review: LoRA under the recipe's gradient checkpointing (TRL's default, on). Every base weight is frozen,
so a reentrant checkpoint would see no input needing a gradient and give the adapter none; the step must
still move the adapter (and nothing else)."""

from __future__ import annotations

import pytest

pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from gensearcher.testing.image_apis import KEY, ImageApis  # noqa: E402
from tests.conftest import make_image  # noqa: E402
from tests.train.test_grpo import GradedJudge, tasks_file, trainer_for  # noqa: E402

# Reentrant (what TRL forces under ZeRO-3 + PEFT): torch warns that the frozen vision tower's checkpointed
# blocks have no input needing a gradient; true and harmless there (LoRA adapts the language model only).
_FROZEN_TOWER = pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad:UserWarning")


@pytest.mark.parametrize("reentrant", [None, pytest.param(True, marks=_FROZEN_TOWER), False])
def test_lora_with_gradient_checkpointing_trains_the_adapter(tiny_checkpoint, local_web, tmp_path, reentrant):
    gt = make_image(tmp_path / "gt.png", size=(256, 256))
    tasks = tasks_file(tmp_path, {"A poster of the red team": gt})
    kwargs = {} if reentrant is None else {"gradient_checkpointing_kwargs": {"use_reentrant": reentrant}}
    with ImageApis() as apis:
        generator = {"backend": "openai", "api_key": KEY, "api_base_url": apis.url + "/v1"}
        with trainer_for(tiny_checkpoint, tmp_path / "grpo", local_web, generator, GradedJudge([0.9, 0.2]),
                         {"red team": ["A red poster.", "A dark red poster."]}, tasks, lora=True, lora_r=4,
                         max_steps=1, gradient_accumulation_steps=1, gradient_checkpointing=True,
                         **kwargs) as (trainer, _):
            named = dict(trainer.model.named_parameters())
            before = {n: p.detach().clone() for n, p in named.items()}
            trainer.train()
            moved = {n for n, p in named.items() if not torch.equal(before[n], p)}
            steps = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert steps and steps[0]["reward_std"] > 0
    assert moved and all("lora_" in n for n in moved)
    assert any("lora_A" in n for n in moved) and any("lora_B" in n for n in moved)


def test_a_lora_run_resumes_from_its_adapter_checkpoint(tiny_checkpoint, local_web, tmp_path):
    """checkpoint-N of a LoRA run holds the adapter (not merged weights): a resumed run starts from exactly
    that adapter and its step count, and trains on from there."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    gt = make_image(tmp_path / "gt.png", size=(256, 256))
    tasks = tasks_file(tmp_path, {"A poster of the red team": gt})
    answers = {"red team": ["A red poster.", "A dark red poster."]}
    fields = {"lora": True, "lora_r": 4, "gradient_accumulation_steps": 1, "save_strategy": "steps", "save_steps": 1}
    started: dict[str, torch.Tensor] = {}

    class AtStart(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            started.update({n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n})

    with ImageApis() as apis:
        generator = {"backend": "openai", "api_key": KEY, "api_base_url": apis.url + "/v1"}
        with trainer_for(tiny_checkpoint, tmp_path / "first", local_web, generator, GradedJudge([0.9, 0.2]),
                         answers, tasks, max_steps=1, **fields) as (trainer, _):
            trainer.train()
        checkpoint = tmp_path / "first" / "checkpoint-1"
        saved = load_file(checkpoint / "adapter_model.safetensors")
        with trainer_for(tiny_checkpoint, tmp_path / "second", local_web, generator, GradedJudge([0.9, 0.2]),
                         answers, tasks, max_steps=2, **fields) as (trainer, _):
            trainer.add_callback(AtStart())
            trainer.train(resume_from_checkpoint=str(checkpoint))
            after = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
            step = trainer.state.global_step
    assert not (checkpoint / "model.safetensors").exists() and saved
    assert any(bool(t.abs().sum() > 0) for n, t in saved.items() if "lora_B" in n)  # trained, not the zero init
    assert {n.replace(".default", "") for n in started} == set(saved)
    assert all(torch.equal(started[n], saved[n.replace(".default", "")]) for n in started)
    assert step == 2 and any(not torch.equal(started[n], after[n]) for n in started)


async def test_the_rollout_engine_samples_with_the_adapter(tiny_checkpoint, tmp_path):
    """The real `generate` path of a rollout turn (an image in the prompt) over the PEFT-wrapped model, as
    `unwrap_model_for_generation` hands it over: a changed adapter changes the turn, a disabled one gives
    the base model's."""
    from peft import get_peft_model

    from gensearcher.images import prepare_for_policy
    from gensearcher.messages import Message
    from gensearcher.train.config import GenGRPOConfig, load_config
    from gensearcher.train.rollout import RolloutEngine, RolloutPolicy, Sampling
    from gensearcher.train.sft import load_for_training, lora_config

    config = load_config(None, {"output_dir": str(tmp_path / "o"), "lora": True, "lora_r": 4, "bf16": False,
                                "report_to": "none"}, GenGRPOConfig)
    model, processor = load_for_training(str(tiny_checkpoint), config)
    peft = get_peft_model(model, lora_config(config))
    picture = prepare_for_policy(make_image(tmp_path / "a.png", size=(256, 256)), tmp_path / "store", 160_000)
    messages = [Message(role="system", text="You help."), Message(role="user", text="What is it?", images=[picture])]

    async def turn() -> list[int]:
        engine = RolloutEngine(peft, processor, Sampling(temperature=0.0, max_new_tokens=12), 4)
        return (await RolloutPolicy(engine, max_completion_tokens=400).complete(messages, max_tokens=12)).completion_token_ids

    fresh = await turn()  # lora_B starts at zero: the base model's turn
    with torch.no_grad():
        for name, parameter in peft.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 2.0, generator=torch.Generator().manual_seed(0))
    adapted = await turn()
    with peft.disable_adapter():
        disabled = await turn()
    assert fresh and adapted != fresh and disabled == fresh
