"""Building an agent from the settings: one validated construction for the CLI, evaluation and training."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gensearcher.agent.loop import Agent
from gensearcher.agent.prompts import Framing, load_reference_texts, load_system_template
from gensearcher.config import Settings, env_name
from gensearcher.errors import ConfigError, UserError
from gensearcher.policy.base import PolicyBackend
from gensearcher.tools.base import Toolbox


@dataclass(frozen=True)
class AgentRecipe:
    """Everything but the policy and tools: the same texts, framing and budgets for every agent built.

    The trainer builds one agent per rollout over a shared toolbox; `build_agent` builds one agent.
    """

    settings: Settings
    template: str | None
    framing: Framing
    record: dict[str, Any]
    image_dir: Path

    @classmethod
    def from_settings(cls, settings: Settings, out_dir: Path, *, system_prompt_file: Path | None = None) -> AgentRecipe:
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
        image_dir = (settings.search.image_dir or out_dir / "images") / "policy"
        return cls(settings=settings, template=template, framing=framing, record=record, image_dir=image_dir)

    def agent(self, policy: PolicyBackend, toolbox: Toolbox) -> Agent:
        settings = self.settings
        return Agent(policy, toolbox, config=settings.agent, max_refs=settings.max_refs,
                     max_pixels=settings.policy.max_pixels, image_dir=self.image_dir,
                     system_template=self.template, framing=self.framing, record=self.record)


@asynccontextmanager
async def build_agent(
    settings: Settings, out_dir: Path, *, policy: PolicyBackend | None = None,
    system_prompt_file: Path | None = None, max_connections: int = 256,
) -> AsyncIterator[Agent]:
    """`async with build_agent(settings, out_dir) as agent:` an agent whose tools (and policy) close on exit.

    Everything is validated on entry, before any work starts. `policy` injects a policy the caller owns
    (a trainer's, a test's): it is used as given and not closed here; without it, the configured policy is
    built from `settings.policy` and closed on exit.
    """
    from gensearcher.policy import build_policy
    from gensearcher.tools import build_tools

    recipe = AgentRecipe.from_settings(settings, out_dir, system_prompt_file=system_prompt_file)
    if policy is None:
        settings.resolved_policy_backend()
    tools = build_tools(settings, output_dir=out_dir)
    owned: PolicyBackend | None = None
    try:
        if policy is None:
            policy = owned = build_policy(settings, max_connections=max_connections)
        yield recipe.agent(policy, tools.toolbox)
    finally:
        try:
            if owned is not None:
                await owned.aclose()
        finally:
            await tools.aclose()
