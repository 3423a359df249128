"""Policy backends: who writes the agent's turns.

    openai        any OpenAI-compatible chat server (vLLM, SGLang, OpenAI)   policy/openai_chat.py
    transformers  an in-process Qwen3-VL-family checkpoint                  policy/transformers_local.py
"""

from __future__ import annotations

from gensearcher.config import Settings
from gensearcher.policy.base import PolicyBackend, PolicyResponse, TokenUsage

__all__ = ["PolicyBackend", "PolicyResponse", "TokenUsage", "build_policy"]


def build_policy(settings: Settings, *, max_connections: int = 256) -> PolicyBackend:
    """The configured backend. Raises ConfigError when its settings are incomplete."""
    backend = settings.resolved_policy_backend()
    if backend == "openai":
        from gensearcher.policy.openai_chat import OpenAIChatPolicy

        return OpenAIChatPolicy(settings.policy, max_connections=max_connections)
    from gensearcher.policy.transformers_local import TransformersPolicy

    return TransformersPolicy(settings.policy)
