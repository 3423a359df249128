"""Building an agent from the settings: the one validated construction the CLI and the eval pipeline share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gensearcher.agent.loop import Agent
from gensearcher.agent.prompts import load_system_template
from gensearcher.config import Settings


def build_agent(settings: Settings, out_dir: Path, system_prompt_file: Path | None = None, *,
                max_connections: int = 256) -> tuple[Agent, Any]:
    """Validate everything, then build the agent and its tools, before any work starts.

    Returns (agent, tools); close both (`agent.policy.aclose()`, `tools.aclose()`) when done.
    """
    from gensearcher.policy import build_policy
    from gensearcher.tools import build_tools

    template = load_system_template(system_prompt_file)
    settings.resolved_policy_backend()
    tools = build_tools(settings, output_dir=out_dir)
    image_dir = settings.search.image_dir or out_dir / "images"
    policy = build_policy(settings, max_connections=max_connections)
    agent = Agent(policy, tools.toolbox, config=settings.agent, max_refs=settings.max_refs,
                  max_pixels=settings.policy.max_pixels, image_dir=image_dir / "policy",
                  system_template=template, record=settings.masked())
    return agent, tools
