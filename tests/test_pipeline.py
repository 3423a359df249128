"""`run_one` and `build_agent` as a library: research then generation, with an injected policy.

The policy is a real OpenAI-compatible client talking to a scripted server; the generator is the OpenAI
Images backend talking to a local server that speaks that API.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gensearcher.agent import Task, build_agent
from gensearcher.config import PolicyConfig, load_settings
from gensearcher.errors import ConfigError
from gensearcher.messages import Message
from gensearcher.pipeline import RunRecord, run_one
from gensearcher.policy import PolicyResponse
from gensearcher.policy.openai_chat import OpenAIChatPolicy
from gensearcher.testing import ScriptedPolicyServer
from gensearcher.testing.image_apis import KEY, ImageApis
from tests.conftest import make_image
from tests.helpers import answer, call

PROMPT = "The podium of the 2026 race"


class Owned:
    """Wraps a real policy client and counts aclose(): an injected policy belongs to its caller."""

    def __init__(self, inner: OpenAIChatPolicy):
        self.inner = inner
        self.closed = 0

    async def complete(self, messages: Sequence[Message], *, max_tokens: int) -> PolicyResponse:
        return await self.inner.complete(messages, max_tokens=max_tokens)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    async def aclose(self) -> None:
        self.closed += 1


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "race.md").write_text("# Race 2026\nThe podium was green.\n")
    make_image(root / "podium.png", size=(1328, 1328), color=(0, 200, 0))  # a real image's size
    return root


def settings_for(corpus, apis, **policy):
    generator = {"backend": "openai", "api_key": KEY, "api_base_url": apis.url + "/v1"}
    return load_settings({"search": {"backend": "local", "local_corpus": corpus}, "policy": policy,
                          "generator": generator})


async def test_run_one_researches_renders_and_records(tmp_path, corpus):
    script = {PROMPT: [call("image_search", query="podium"),
                       answer("The podium of the first reference image.", "IMG_001")],
              "no answer please": ["I will not use the protocol."] * 20}
    with ScriptedPolicyServer(script) as server, ImageApis() as apis:
        policy = Owned(OpenAIChatPolicy(PolicyConfig(base_url=server.base_url, model="m", max_retries=0)))
        settings = settings_for(corpus, apis)  # no policy settings at all: the injected one is used
        try:
            record = await run_one(settings, PROMPT, tmp_path / "out", policy=policy)
            failed = await run_one(settings.model_copy(update={"agent": settings.agent.model_copy(
                update={"max_llm_calls": 1})}), "no answer please", tmp_path / "none", policy=policy)
        finally:
            await policy.inner.aclose()
        edits = [body for kind, body in apis.requests if kind == "openai.edits"]
    assert policy.closed == 0
    assert record.termination == "answer" and record.error is None
    assert record.gen_prompt == "The podium of the first reference image."
    assert [r.img_id for r in record.reference_images] == ["IMG_001"]
    assert record.generation is not None and record.generation.backend == "openai"
    assert record.generation.used_images == [record.reference_images[0].local_path]
    assert record.image is not None and Path(record.image).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert len(edits) == 1 and edits[0]["images"] == 1
    assert RunRecord.model_validate_json((tmp_path / "out" / "run.json").read_text()) == record
    assert json.loads((tmp_path / "out" / "trajectory.json").read_text())["termination"] == "answer"
    # No answer: recorded, no image, and the generator was not asked.
    assert failed.image is None and failed.generation is None and "without an answer" in (failed.error or "")
    assert json.loads((tmp_path / "none" / "run.json").read_text())["error"] == failed.error


async def test_build_agent_validates_on_entry_and_closes_what_it_built(tmp_path, corpus):
    settings = load_settings({"search": {"backend": "local", "local_corpus": corpus}})
    with pytest.raises(ConfigError, match="no policy configured"):
        async with build_agent(settings, tmp_path / "out"):
            pass
    with ScriptedPolicyServer({PROMPT: [answer("A podium.")]}) as server:
        configured = load_settings({"search": {"backend": "local", "local_corpus": corpus},
                                    "policy": {"base_url": server.base_url, "model": "m"}})
        with pytest.raises(RuntimeError, match="stop"):
            async with build_agent(configured, tmp_path / "out") as agent:
                trajectory = await agent.run(Task(id=0, prompt=PROMPT))
                built = agent.policy
                raise RuntimeError("stop")
    assert trajectory.termination == "answer"
    assert isinstance(built, OpenAIChatPolicy) and built._session is None  # closed on the way out
