"""The rollout engine and policy with the real tiny model: batched turns equal one-at-a-time turns, a reply
cut at the token cap is closed by a token the model did not write, and the rollout budget ends a rollout."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from gensearcher.messages import Message  # noqa: E402
from gensearcher.policy.transformers_local import encode_messages, load_processor  # noqa: E402
from gensearcher.train.rollout import RolloutEngine, RolloutPolicy, Sampling  # noqa: E402
from tests.conftest import make_image  # noqa: E402


@pytest.fixture(scope="module")
def model_and_processor(tiny_checkpoint):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(str(tiny_checkpoint), dtype=torch.float32).eval()
    return model, load_processor(str(tiny_checkpoint))


def conversation(tmp_path: Path, with_image: bool) -> list[Message]:
    from gensearcher.images import prepare_for_policy

    messages = [Message(role="system", text="You research pictures."), Message(role="user", text="A poster of the red team")]
    if with_image:
        ref = prepare_for_policy(make_image(tmp_path / "pic.png", size=(1328, 996)), tmp_path / "policy", 160_000)
        messages[1] = Message(role="user", text="A poster like this one", images=[ref])
    return messages


async def test_batched_turns_are_the_turns_generated_one_at_a_time(model_and_processor, tmp_path):
    model, processor = model_and_processor
    requests = []
    for with_image in (False, True):
        encoded = encode_messages(processor, conversation(tmp_path, with_image), add_generation_prompt=True)
        pixels = [encoded["pixel_values"]] if "pixel_values" in encoded else []
        grids = [encoded["image_grid_thw"]] if "image_grid_thw" in encoded else []
        requests.append((encoded["input_ids"][0].tolist(), pixels, grids))
    assert len(requests[0][0]) != len(requests[1][0])  # different lengths: the batch is left-padded
    greedy = Sampling(temperature=0.0, max_new_tokens=12)
    batched = RolloutEngine(model, processor, greedy, max_batch=8)
    together = await asyncio.gather(*(batched.generate(ids, p, g, 12) for ids, p, g in requests))
    alone = RolloutEngine(model, processor, greedy, max_batch=1)
    apart = [await alone.generate(ids, p, g, 12) for ids, p, g in requests]
    assert batched.calls == 1 and alone.calls == 2
    assert together == apart and all(len(t) == 12 for t in together)
    vision = {processor.tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|vision_start|>")}
    assert not vision & {t for turn in together for t in turn}  # vision tokens are never sampled


async def test_a_cut_reply_is_closed_by_the_loop_and_the_budget_ends_the_rollout(model_and_processor, tmp_path):
    from gensearcher.errors import ContextLengthExceeded

    model, processor = model_and_processor
    engine = RolloutEngine(model, processor, Sampling(temperature=0.0, max_new_tokens=8))
    policy = RolloutPolicy(engine, max_completion_tokens=60)
    messages = conversation(tmp_path, False)
    first = await policy.complete(messages, max_tokens=8)
    assert first.finish_reason == "length" and len(first.completion_token_ids or []) == 8
    messages += [Message(role="assistant", text=first.text), Message(role="user", text="Your reply was cut off.")]
    second = await policy.complete(messages, max_tokens=8)
    context = second.prompt_token_ids or []
    cut = len(first.prompt_token_ids or []) + 8
    assert context[:cut] == (first.prompt_token_ids or []) + (first.completion_token_ids or [])
    assert processor.tokenizer.decode(context[cut:]).startswith("<|im_end|>\n<|im_start|>user\nYour reply was cut off.")
    messages += [Message(role="assistant", text=second.text), Message(role="user", text="x" * 400)]
    with pytest.raises(ContextLengthExceeded, match="60-token completion budget"):
        await policy.complete(messages, max_tokens=8)
