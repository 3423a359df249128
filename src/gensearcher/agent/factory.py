"""Building an agent from the settings: the one validated construction the CLI and the eval pipeline share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gensearcher.agent.loop import Agent
from gensearcher.agent.prompts import Framing, load_reference_texts, load_system_template
from gensearcher.config import Settings, env_name
from gensearcher.errors import ConfigError, UserError


def build_agent(settings: Settings, out_dir: Path, system_prompt_file: Path | None = None, *,
                max_connections: int = 256) -> tuple[Agent, Any]:
    """Validate everything, then build the agent and its tools, before any work starts.

    Returns (agent, tools); close both (`agent.policy.aclose()`, `tools.aclose()`) when done.
    """
    from gensearcher.policy import build_policy
    from gensearcher.tools import build_tools

    template = load_system_template(system_prompt_file)
    record = settings.masked()
    framing = Framing()
    if settings.reference_texts is not None:
        if system_prompt_file is not None:
            raise UserError("--system-prompt-file and reference_texts both set the system prompt; choose one")
        try:
            texts = load_reference_texts(settings.reference_texts)
        except UserError as exc:
            raise ConfigError(f"{env_name(None, 'reference_texts')}: {exc}") from None
        framing = Framing(texts)
        record["reference_texts_sha256"] = texts.digest()
    settings.resolved_policy_backend()
    tools = build_tools(settings, output_dir=out_dir)
    image_dir = settings.search.image_dir or out_dir / "images"
    policy = build_policy(settings, max_connections=max_connections)
    agent = Agent(policy, tools.toolbox, config=settings.agent, max_refs=settings.max_refs,
                  max_pixels=settings.policy.max_pixels, image_dir=image_dir / "policy",
                  system_template=template, framing=framing, record=record)
    return agent, tools
