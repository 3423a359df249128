"""Research tools: the protocol (`base`), the tools, and their backends.

    search.py       the search and image_search tools over any backend
    browse.py       the browse tool (fetch or Jina, extract, summarise)
    serper.py       Serper (Google) API                       GENSEARCHER_SEARCH_BACKEND=serper
    ddgs_search.py  ddgs, keyless metasearch (the default)   =ddgs
    searxng.py      a self-hosted SearXNG                    =searxng
    local.py        a folder of your own documents/images    =local
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from gensearcher._redact import Redactor
from gensearcher.config import Settings, env_name
from gensearcher.errors import ConfigError
from gensearcher.tools.base import (
    PROTOCOL_TOOLS,
    BrowseArgs,
    ImageCandidate,
    ImageHit,
    ImageSearchArgs,
    SearchArgs,
    SearchBackend,
    Toolbox,
    ToolCallOutcome,
    ToolFn,
    ToolResult,
    ToolSpec,
    WebHit,
)
from gensearcher.web import Fetcher, FetchError, Web, WebCache
from gensearcher.web.fetcher import parse_target

__all__ = [
    "PROTOCOL_TOOLS",
    "BrowseArgs",
    "ImageCandidate",
    "ImageHit",
    "ImageSearchArgs",
    "ResearchTools",
    "SearchArgs",
    "SearchBackend",
    "ToolCallOutcome",
    "ToolResult",
    "ToolSpec",
    "Toolbox",
    "WebHit",
    "build_tools",
    "build_web",
]


class _Closable(Protocol):
    async def aclose(self) -> None: ...


class ResearchTools:
    """The toolbox an agent uses, and the network resources behind it (closed with `aclose`)."""

    def __init__(self, toolbox: Toolbox, web: Web, closers: Sequence[_Closable]):
        self.toolbox = toolbox
        self.web = web
        self._closers = closers

    async def aclose(self) -> None:
        for resource in self._closers:
            await resource.aclose()
        await self.web.aclose()


def build_web(settings: Settings, *, output_dir: Path | None = None) -> Web:
    """The cached, hardened network door configured by `settings` (no fetcher at all in replay mode).

    Two clients: the tools' fetcher, which trusts nothing (every URL from the model, a search result or a
    redirect meets the address rule), and the endpoint client, which reaches exactly the configured API
    endpoints (search, SearXNG, Jina) and nothing else. The summariser has its own client.
    The cache defaults to `<output_dir>/web-cache` of this run, so runs never share entries unasked.
    """
    cache_cfg = settings.cache
    fetcher = endpoints = None
    if cache_cfg.mode != "replay":
        fetcher = Fetcher(settings.fetch)
        search = settings.search
        configured = {name: getattr(search, name) for name in ("text_search_url", "image_search_url", "searxng_url",
                                                               "jina_url")}
        for name, url in configured.items():
            try:
                if url:
                    parse_target(url)
            except FetchError:
                raise ConfigError(f"{env_name('search', name)}={url!r} is not an http(s) URL") from None
        endpoints = Fetcher(settings.fetch, endpoints=configured.values())
    cache = None
    if cache_cfg.mode != "off":
        cache = WebCache(cache_cfg.dir or (output_dir or settings.output_dir) / "web-cache", mode=cache_cfg.mode,
                         max_age_s=cache_cfg.max_age_s)
    return Web(fetcher, cache, endpoints=endpoints)


def _backend(name: str, settings: Settings, web: Web) -> SearchBackend:
    search = settings.search
    if name == "serper":
        if search.serper_api_key is None:
            raise ConfigError(f"{env_name('search', 'serper_api_key')} (or SERPER_KEY_ID) is not set (the Serper key).")
        from gensearcher.tools.serper import SerperBackend

        return SerperBackend(web, api_key=search.serper_api_key.get_secret_value(),
                             search_url=search.text_search_url, images_url=search.image_search_url)
    if name == "searxng":
        if not search.searxng_url:
            raise ConfigError(f"{env_name('search', 'searxng_url')} is not set (the SearXNG instance).")
        from gensearcher.tools.searxng import SearxngBackend

        return SearxngBackend(web, base_url=search.searxng_url)
    if name == "ddgs":
        from gensearcher.tools.ddgs_search import DdgsBackend

        return DdgsBackend(web, engine=search.ddgs_backend, timeout_s=settings.fetch.timeout_s)
    if name == "local":
        if search.local_corpus is None:
            raise ConfigError(f"{env_name('search', 'local_corpus')} is not set (the folder the local backend searches).")
        from gensearcher.tools.local import LocalCorpus

        return LocalCorpus(search.local_corpus)
    raise ConfigError(f"{env_name('search', 'backend')}={name!r} is not a search backend")


def build_tools(settings: Settings, *, output_dir: Path | None = None) -> ResearchTools:
    """The three tools as configured. Raises ConfigError before any work starts."""
    from gensearcher.policy.openai_chat import OpenAIChatPolicy
    from gensearcher.tools.browse import BrowseTool
    from gensearcher.tools.local import LocalCorpus
    from gensearcher.tools.search import ImageSearchTool, SearchTool
    from gensearcher.web.extract_pool import ExtractionPool

    search = settings.search
    text_name = search.text_backend()
    image_name = search.image_backend or text_name
    web = build_web(settings, output_dir=output_dir)
    text_backend = _backend(text_name, settings, web)
    image_backend = text_backend if image_name == text_name else _backend(image_name, settings, web)

    summariser, summariser_name, closers = None, "", list[_Closable]()
    base_url = search.summary_base_url or settings.policy.base_url
    model = search.summary_model or (settings.policy.model if not search.summary_base_url else None)
    if search.summarise and base_url and model:
        key = search.summary_api_key or (settings.policy.api_key if not search.summary_base_url else None)
        config = settings.policy.model_copy(update={"base_url": base_url, "model": model, "api_key": key,
                                                    "temperature": 0.0, "top_p": 1.0, "logprobs": False,
                                                    "return_token_ids": False})
        summariser, summariser_name = OpenAIChatPolicy(config, max_connections=64), model
        closers.append(summariser)
    corpus = text_backend if isinstance(text_backend, LocalCorpus) else None
    image_dir = search.image_dir or (output_dir or settings.output_dir) / "images"
    image_search = ImageSearchTool(image_backend, web, image_dir=image_dir, candidates=search.image_candidates,
                                   max_pixels=search.max_image_pixels, stored_pixels=search.stored_image_pixels,
                                   decode_memory_bytes=search.image_decode_memory_mb * 2**20)
    extractor = ExtractionPool(workers=search.extract_workers, timeout_s=search.extract_timeout_s,
                               max_bytes=search.extract_max_bytes)
    closers += [image_search, extractor]
    tools: dict[str, ToolFn] = {
        "search": SearchTool(text_backend),
        "image_search": image_search,
        "browse": BrowseTool(web, summariser=summariser, summariser_name=summariser_name,
                             max_chars=search.max_browse_chars, chunk_tokens=search.summary_chunk_tokens,
                             jina_key=search.jina_api_keys.get_secret_value() if search.jina_api_keys else None,
                             jina_url=search.jina_url, corpus=corpus, extractor=extractor),
    }
    # Every configured secret is cut from every observation: a failing server may echo what it was sent.
    toolbox = Toolbox(tools, timeout_s=settings.agent.tool_timeout_s, redact=Redactor.from_settings(settings))
    return ResearchTools(toolbox, web, closers)
