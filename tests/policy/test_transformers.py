"""The in-process transformers backend with a tiny random-weight Qwen3-VL built from a config."""

from __future__ import annotations

import pytest

from gensearcher.agent import Agent, Task
from gensearcher.config import AgentConfig, PolicyConfig, load_settings
from gensearcher.images import prepare_for_policy
from gensearcher.messages import Message
from gensearcher.policy import build_policy
from gensearcher.tools import Toolbox

pytest.importorskip("torch")
pytest.importorskip("trl")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from gensearcher.testing.tiny_models import save_tiny_qwen3_vl

    return save_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny-qwen3-vl"))


@pytest.fixture(scope="module")
def policy(checkpoint):
    settings = load_settings({"policy": {"model": str(checkpoint), "temperature": 0.0, "logprobs": True}})
    return build_policy(settings)  # auto: no base_url -> transformers


async def test_turn_with_an_image_returns_exact_tokens(policy, picture_dir, tmp_path):
    image = prepare_for_policy(picture_dir / "pic4.png", tmp_path, max_pixels=64 * 64)
    messages = [Message(role="system", text="You research."),
                Message(role="user", text="<tool_response>\nIMG_001\n</tool_response>", images=[image])]
    response = await policy.complete(messages, max_tokens=12)
    processor = policy._processor
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert image_pad in response.prompt_token_ids  # the picture reached the model
    assert response.usage.prompt_tokens == len(response.prompt_token_ids)
    assert 0 < len(response.completion_token_ids) <= 12
    assert response.text == processor.tokenizer.decode(response.completion_token_ids, skip_special_tokens=True)
    assert len(response.completion_logprobs) == len(response.completion_token_ids)
    assert all(lp <= 0 for lp in response.completion_logprobs)
    assert response.finish_reason in ("stop", "length")
    assert policy.describe()["architecture"] == "Qwen3VLForConditionalGeneration"


async def test_greedy_decoding_is_deterministic(policy):
    messages = [Message(role="user", text="A poster of the winner")]
    first = await policy.complete(messages, max_tokens=8)
    second = await policy.complete(messages, max_tokens=8)
    assert first.completion_token_ids == second.completion_token_ids
    assert first.finish_reason == "length" or first.completion_token_ids[-1] == policy._processor.tokenizer.eos_token_id


async def test_agent_runs_on_the_local_backend(policy, tmp_path):
    agent = Agent(policy, Toolbox({}), config=AgentConfig(max_llm_calls=2, max_new_tokens_per_turn=16, date="2026-11-27"),
                  max_refs=5, max_pixels=64 * 64, image_dir=tmp_path)
    trajectory = await agent.run(Task(id=1, prompt="A poster of the winner"))
    # A random model writes no valid turn: the loop gives feedback, then forces a final round.
    assert trajectory.termination in ("no_answer", "repeated_response")
    assert all(step.completion_token_ids for step in trajectory.steps)
    assert trajectory.versions["policy"]["backend"] == "transformers"


def test_missing_checkpoint_is_a_config_error(tmp_path):
    from gensearcher.errors import ConfigError
    from gensearcher.policy.transformers_local import TransformersPolicy

    with pytest.raises(ConfigError, match="cannot load the policy checkpoint"):
        TransformersPolicy(PolicyConfig(model=str(tmp_path / "empty")))
