"""Recording real trajectories for the training tests: the scripted policy against the local test web."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gensearcher.agent import BatchRunner, load_tasks
from gensearcher.agent.factory import build_agent
from gensearcher.config import load_settings
from gensearcher.testing import ScriptedPolicyServer
from gensearcher.testing.local_web import LocalWeb
from tests.helpers import answer, call

pytest.importorskip("torch")
pytest.importorskip("trl")

# A short system prompt keeps the tiny model's sequences short on CPU; it is used for recording and for the
# research run with the trained checkpoint alike, as a real user's --system-prompt-file would be.
SHORT_PROMPT = ("You research pictures. Today is {{date}}. Write <think>...</think>, then one <tool_call> or "
                "one <answer> citing at most {{max_refs}} images.")
DATE = "2026-11-27"


def tool_turn(query: str) -> str:
    return call("image_search", query=query, top_k=1)


def answer_turn(subject: str) -> str:
    return answer(f"A poster of {subject}, colours as in the reference.", "IMG_001")


def web_settings(web: LocalWeb, **sections: Any) -> dict[str, Any]:
    """Settings that point the search tools at the local web (Serper-shaped endpoints on 127.0.0.1)."""
    base = {
        "agent": {"date": DATE, "max_llm_calls": 1},
        "search": {"backend": "serper", "serper_api_key": "test-key", "text_search_url": web.url + "/serper/search",
                   "image_search_url": web.url + "/serper/images", "summarise": False},
        "fetch": {"allowed_networks": ["127.0.0.1/32"]},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return base


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gensearcher.testing.tiny_models import save_tiny_qwen3_vl

    return save_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny-qwen3-vl"))


@pytest.fixture(scope="session")
def prompt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompt") / "short.md"
    path.write_text(SHORT_PROMPT)
    return path


async def record_run(out: Path, script: dict[str, list[str]], prompt_file: Path, web: LocalWeb) -> Path:
    """Research every prompt of `script` with the scripted policy; returns the run folder."""
    tasks_file = out.parent / f"{out.name}-tasks.json"
    tasks_file.write_text(json.dumps([{"id": f"t{i}", "prompt": p} for i, p in enumerate(script)]))
    with ScriptedPolicyServer(script) as server:
        settings = load_settings(web_settings(web, policy={"base_url": server.base_url, "model": "scripted",
                                                           "temperature": 0.0},
                                              cache={"dir": str(out / "web-cache")}))
        async with build_agent(settings, out, system_prompt_file=prompt_file) as agent:
            await BatchRunner(agent, out, concurrency=2).run(load_tasks(tasks_file))
    return out


@pytest.fixture(scope="session")
def local_web() -> Any:
    with LocalWeb() as web:
        yield web


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory, prompt_file: Path, local_web: LocalWeb) -> Path:
    """Two answered trajectories (tool call, then the answer in the final round) and one without an answer."""
    import asyncio

    script = {"A poster of the red team": [tool_turn("red team"), answer_turn("the red team")],
              "A poster of the blue team": [tool_turn("blue team"), answer_turn("the blue team")],
              "A poster that never ends": [tool_turn("endless"), tool_turn("endless again")]}
    out = tmp_path_factory.mktemp("runs") / "run"
    return asyncio.run(record_run(out, script, prompt_file, local_web))
