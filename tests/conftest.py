"""Shared fixtures: a clean environment, images on disk, and an agent wired to a scripted server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gensearcher.agent import Agent
from gensearcher.config import AgentConfig, PolicyConfig, all_env_names
from gensearcher.policy.openai_chat import OpenAIChatPolicy
from gensearcher.tools import ImageHit, Toolbox, ToolResult

_SECRET_LIKE = ("PROXY", "API_KEY", "OPENAI", "HF_")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting, key or proxy from the developer's shell leaks into a test; cwd has no .env."""
    names = {name for names in all_env_names().values() for name in names}
    for key in list(os.environ):
        if (key in names or key.startswith(("GENSEARCHER_", "GEN_", "BROWSE_"))
                or any(part in key.upper() for part in _SECRET_LIKE)):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)


def make_image(path: Path, size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture
def picture_dir(tmp_path: Path) -> Path:
    """Five distinct pictures: pic0.png ... pic4.png (pic4 is large, to test the pixel cap)."""
    folder = tmp_path / "pictures"
    for index in range(4):
        make_image(folder / f"pic{index}.png", color=(40 * index, 100, 200 - 30 * index))
    make_image(folder / "pic4.png", size=(1200, 900), color=(9, 9, 9))
    return folder


class InTestTools:
    """Simple in-test tool functions (the network tools are tested on their own)."""

    def __init__(self, picture_dir: Path):
        self.picture_dir = picture_dir
        self.calls: list[tuple[str, Any]] = []

    async def search(self, args: Any) -> ToolResult:
        self.calls.append(("search", args))
        if "nothing" in args.queries[0]:
            return ToolResult(text=f"No results for '{args.queries[0]}'.")
        return ToolResult(text="\n".join(f"[Result for {q}](https://example.org/{i}) a snippet" for i, q in enumerate(args.queries)))

    async def image_search(self, args: Any) -> ToolResult:
        self.calls.append(("image_search", args))
        if args.query == "nothing":
            return ToolResult(text="No images found for 'nothing'. Try a shorter query.")
        names = sorted(self.picture_dir.glob("*.png"))
        start = 2 if args.query == "second" else 0
        hits = [
            ImageHit(local_path=str(path), url=f"https://img.example.org/{path.name}", title=f"title {path.stem}",
                     page_url="https://example.org/page")
            for path in names[start : start + args.top_k]
        ]
        return ToolResult(images=hits)

    async def browse(self, args: Any) -> ToolResult:
        self.calls.append(("browse", args))
        from gensearcher.errors import ToolError

        if "broken" in args.url:
            raise ToolError("the page answered HTTP 404")
        if "slow" in args.url:
            import asyncio

            await asyncio.sleep(5)
        return ToolResult(text=f"The page {args.url} says: the trophy is silver.")


@pytest.fixture
def tools(picture_dir: Path) -> InTestTools:
    return InTestTools(picture_dir)


@pytest.fixture
async def make_agent(tmp_path: Path, tools: InTestTools) -> AsyncIterator[Any]:
    """make_agent(server, **agent_config) -> Agent talking to the scripted server over HTTP."""
    agents: list[Agent] = []

    def build(server: Any, *, policy: dict[str, Any] | None = None, tool_timeout_s: float = 2.0,
              max_refs: int = 5, system_template: str | None = None, **agent_fields: Any) -> Agent:
        policy_config = PolicyConfig(base_url=server.base_url, model="scripted", max_retries=2, **(policy or {}))
        toolbox = Toolbox({"search": tools.search, "image_search": tools.image_search, "browse": tools.browse},
                          timeout_s=tool_timeout_s)
        agent = Agent(OpenAIChatPolicy(policy_config), toolbox, config=AgentConfig(date="2026-11-27", **agent_fields),
                      max_refs=max_refs, max_pixels=policy_config.max_pixels, image_dir=tmp_path / "policy_images",
                      system_template=system_template)
        agents.append(agent)
        return agent

    yield build
    for agent in agents:
        await agent.policy.aclose()


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    from gensearcher.testing.tiny_models import save_tiny_qwen_image

    return save_tiny_qwen_image(tmp_path_factory.mktemp("tiny-qwen-image"))


@pytest.fixture(scope="session")
def tiny_edit_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    from gensearcher.testing.tiny_models import save_tiny_qwen_image

    return save_tiny_qwen_image(tmp_path_factory.mktemp("tiny-qwen-image-edit"), edit=True)
