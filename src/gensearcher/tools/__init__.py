"""Research tools: the protocol (`base`) and its backends.

    local     a folder of the user's own documents and images, no network      tools/local.py
    serper, ddgs, searxng   web backends: not built yet (the tools issue)
"""

from __future__ import annotations

from gensearcher.config import Settings, env_name
from gensearcher.errors import ConfigError, NotBuiltError
from gensearcher.tools.base import (
    PROTOCOL_TOOLS,
    BrowseArgs,
    ImageHit,
    ImageSearchArgs,
    SearchArgs,
    Toolbox,
    ToolCallOutcome,
    ToolResult,
    ToolSpec,
)

__all__ = [
    "BrowseArgs",
    "ImageHit",
    "ImageSearchArgs",
    "PROTOCOL_TOOLS",
    "SearchArgs",
    "ToolCallOutcome",
    "ToolResult",
    "ToolSpec",
    "Toolbox",
    "build_toolbox",
]

WEB_BACKENDS = ("serper", "ddgs", "searxng")


def build_toolbox(settings: Settings) -> Toolbox:
    """The configured tools. Raises ConfigError or NotBuiltError before any work starts."""
    search = settings.search
    backend = search.backend or ("local" if search.local_corpus else None)
    if backend == "local":
        if search.local_corpus is None:
            raise ConfigError(f"{env_name('search', 'local_corpus')} is not set (the folder the local backend searches).")
        from gensearcher.tools.local import LocalCorpus

        corpus = LocalCorpus(search.local_corpus, max_browse_chars=search.max_browse_chars)
        impls = {"search": corpus.search, "image_search": corpus.image_search, "browse": corpus.browse}
        return Toolbox(impls, timeout_s=settings.agent.tool_timeout_s)
    if backend in WEB_BACKENDS or backend is None:
        raise NotBuiltError(
            f"the web search backends ({', '.join(WEB_BACKENDS)}) are not built yet. To research a folder of your "
            f"own documents and images, set {env_name('search', 'backend')}=local and "
            f"{env_name('search', 'local_corpus')}=DIR."
        )
    raise ConfigError(f"{env_name('search', 'backend')}={backend!r} is not a search backend; known: local, {', '.join(WEB_BACKENDS)}")
