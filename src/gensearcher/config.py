"""The one typed source of configuration.

Precedence, highest first: CLI flags (passed as ``overrides``) > environment > ``.env`` >
``gensearcher.toml`` > the defaults declared here.

Every field has exactly one derived environment name, ``GENSEARCHER_<SECTION>_<FIELD>`` (or
``GENSEARCHER_<FIELD>`` at the top level), plus the reference system's names as aliases where they mean
the same thing (``env_aliases`` below), so an existing ``.env.gen_image`` keeps working. Objects receive
their own section; nothing else reads ``os.environ``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    computed_field,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gensearcher._env_sources import ENV_PREFIX, NamedEnvSource, env_name, env_names, leaf_fields, read_dotenv
from gensearcher._reference_env import GEN_IMAGE_FILE, generator_backend, translate
from gensearcher.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "ENV_PREFIX",
    "AgentConfig",
    "CacheConfig",
    "FetchConfig",
    "GeneratorConfig",
    "JudgeConfig",
    "PolicyConfig",
    "RewardConfig",
    "SearchConfig",
    "ServerConfig",
    "Settings",
    "all_env_names",
    "env_name",
    "load_settings",
]


def _aliases(*names: str) -> dict[str, Any]:
    return {"env_aliases": list(names)}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolicyConfig(_Section):
    """The vision-language policy that drives the research agent."""

    backend: Literal["auto", "openai", "transformers"] = Field(
        "auto",
        description="'openai' (any OpenAI-compatible server: vLLM, SGLang, OpenAI), 'transformers' (in-process), "
        "or 'auto': openai when base_url is set, else transformers.",
    )
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")
    model: str | None = Field(
        None, description="Served model name (openai) or checkpoint folder / model id (transformers)."
    )
    api_key: SecretStr | None = Field(None, description="Bearer token for the endpoint, if it wants one.")
    temperature: float = Field(0.6, ge=0.0, le=2.0, description="Sampling temperature (0 = greedy).")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling.")
    seed: int | None = Field(None, description="Sampling seed sent to the backend, when it honours one.")
    max_pixels: int = Field(
        160_000, ge=1024, description="Pixel cap of every image shown to the policy.",
        json_schema_extra=_aliases("QWEN_VL_MAX_PIXELS"),
    )
    request_timeout_s: float = Field(300.0, gt=0, description="Timeout of one HTTP request.")
    deadline_s: float = Field(900.0, gt=0, description="Total time for one model call, retries included.")
    max_retries: int = Field(5, ge=0, description="Retries on 429, 5xx, timeouts and connection errors.")
    return_token_ids: bool = Field(
        False, description="Ask the server for prompt/completion token ids (vLLM) and keep them per turn."
    )
    logprobs: bool = Field(False, description="Ask for per-token log-probabilities and keep them per turn.")
    device: str = Field("cpu", description="transformers backend: torch device ('cpu', 'cuda', 'cuda:1').")
    dtype: str = Field("auto", description="transformers backend: torch dtype ('auto', 'bfloat16', 'float32').")


class AgentConfig(_Section):
    """Budgets and limits of the research loop."""

    max_llm_calls: int = Field(
        9, ge=1, description="Rounds before the forced final round.",
        json_schema_extra=_aliases("MAX_LLM_CALL_PER_RUN"),
    )
    max_new_tokens_per_turn: int = Field(
        4096, ge=16, description="Generation cap of one turn.",
        json_schema_extra=_aliases("GEN_MAX_NEW_TOKENS_PER_TURN"),
    )
    max_context_tokens: int = Field(
        64_000, ge=512, description="Context guard: stop with 'context_exceeded' before a prompt would pass this."
    )
    max_images_per_search: int = Field(
        5, ge=0, description="Image-search hits attached to the observation as images."
    )
    tool_timeout_s: float = Field(120.0, gt=0, description="Deadline of one tool call.")
    concurrency: int = Field(
        8, ge=1, description="Trajectories in flight in a batch (flags --concurrency, --research-concurrency)."
    )
    date: str | None = Field(
        None, description="Date written into the system prompt (YYYY-MM-DD). Default: today. Fix it to replay."
    )

    def today(self) -> str:
        return self.date or _dt.date.today().isoformat()


class SearchConfig(_Section):
    """The research tools: which backends, their endpoints and keys, and their limits."""

    backend: Literal["serper", "ddgs", "searxng", "local"] | None = Field(
        None, description="Text search backend. Default: local when local_corpus is set, else serper when a "
        "Serper key is set, else ddgs."
    )
    image_backend: Literal["serper", "ddgs", "searxng", "local"] | None = Field(
        None, description="Image search backend (default: same as backend).",
        json_schema_extra=_aliases("GENSEARCHER_IMAGE_SEARCH_BACKEND"),
    )
    serper_api_key: SecretStr | None = Field(
        None, description="Serper API key; setting it makes serper the default backend.",
        json_schema_extra=_aliases("SERPER_KEY_ID"),
    )
    text_search_url: str = Field(
        "https://google.serper.dev/search", description="Serper-compatible web search endpoint.",
        json_schema_extra=_aliases("TEXT_SEARCH_API_BASE_URL"),
    )
    image_search_url: str = Field(
        "https://google.serper.dev/images", description="Serper-compatible image search endpoint.",
        json_schema_extra=_aliases("IMAGE_SEARCH_API_BASE_URL"),
    )
    searxng_url: str | None = Field(
        None, description="A SearXNG instance with the JSON format enabled.",
        json_schema_extra=_aliases("GENSEARCHER_SEARXNG_URL"),
    )
    ddgs_backend: str = Field("duckduckgo", description="ddgs engine(s), e.g. 'duckduckgo' or 'auto'.")
    jina_api_keys: SecretStr | None = Field(
        None, description="Read pages through Jina Reader instead of fetching them.",
        json_schema_extra=_aliases("JINA_API_KEYS"),
    )
    jina_url: str = Field("https://r.jina.ai", description="Jina Reader endpoint.")
    summary_base_url: str | None = Field(
        None, description="OpenAI-compatible summariser for browse (default: the policy endpoint).",
        json_schema_extra=_aliases("BROWSE_SUMMARY_BASE_URL"),
    )
    summary_model: str | None = Field(
        None, description="Model of the browse summariser (default: the policy model on the policy endpoint).",
        json_schema_extra=_aliases("BROWSE_SUMMARY_MODEL"),
    )
    summary_api_key: SecretStr | None = Field(
        None, description="Bearer token of the summariser endpoint.", json_schema_extra=_aliases("BROWSE_SUMMARY_API_KEY")
    )
    summarise: bool = Field(True, description="Summarise pages for browse; off returns a bounded extract.")
    summary_chunk_tokens: int = Field(
        24_000, ge=500, description="Pages longer than this (about 4 characters a token) are summarised in parts."
    )
    image_dir: Path | None = Field(
        None, description="Where downloaded images are stored (default: <output_dir>/images).",
        json_schema_extra=_aliases("IMAGE_SEARCH_SAVE_DIR"),
    )
    image_candidates: int = Field(
        10, ge=1, le=50, description="Image hits downloaded (concurrently) to find top_k usable ones."
    )
    max_image_pixels: int = Field(
        16_777_216, ge=1,
        description="Images that would decode to more pixels are refused before decoding (decompression-bomb "
        "guard; JPEG decodes downscaled, so a larger photo passes). 4096x4096 is four times what is stored.",
    )
    image_decode_memory_mb: int = Field(
        512, ge=16, description="Memory the image decodes of one process may hold at once; decodes wait for room."
    )
    stored_image_pixels: int = Field(
        4_194_304, ge=1024, description="Downloaded images are re-encoded at most this large."
    )
    local_corpus: Path | None = Field(
        None, description="Folder of documents and images for the 'local' backend."
    )
    max_browse_chars: int = Field(20_000, ge=100, description="Cap of page text returned by browse.")
    extract_workers: int = Field(
        2, ge=1, description="Worker processes that extract page text for browse (killed at the deadline)."
    )
    extract_timeout_s: float = Field(
        20.0, gt=0, description="Deadline of one page's text extraction; past it the worker is killed."
    )
    extract_max_bytes: int = Field(
        1_000_000, ge=1024, description="HTML beyond this many bytes (after scripts and styles are dropped) is cut "
        "before extraction, which bounds its CPU; larger PDFs are refused.",
    )

    def text_backend(self) -> str:
        if self.backend:
            return self.backend
        if self.local_corpus is not None:
            return "local"
        return "serper" if self.serper_api_key is not None else "ddgs"


class FetchConfig(_Section):
    """The hardened fetcher behind every download (pages, images, generator inputs)."""

    allow_private_networks: bool = Field(
        False, description="Lift the rule that refuses private, loopback, link-local and metadata addresses.",
        json_schema_extra=_aliases("GENSEARCHER_ALLOW_PRIVATE_NETWORKS"),
    )
    allowed_networks: list[str] = Field(
        default_factory=list, description="Networks (CIDR) exempt from that rule, e.g. an intranet wiki."
    )
    max_bytes: int = Field(20_000_000, ge=1024, description="Byte cap of one response, enforced while streaming.")
    timeout_s: float = Field(30.0, gt=0, description="Total deadline of one fetch, redirects and retries included.")
    max_redirects: int = Field(5, ge=0, description="Redirects followed; each hop's address is checked again.")
    per_host_concurrency: int = Field(4, ge=1, description="Requests in flight to one host (pages and images).")
    endpoint_concurrency: int = Field(
        32, ge=1, description="Requests in flight to one configured API endpoint (search API, SearXNG, Jina): a "
                              "service, not a website to be polite to; a GRPO step has dozens of rollouts searching.")
    max_retries: int = Field(2, ge=0, description="Retries on 429/5xx (honouring Retry-After) and connection errors.")
    user_agent: str = Field(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
        description="User-Agent of every fetch (some image hosts refuse unknown agents).",
        json_schema_extra=_aliases("IMG_DL_UA"),
    )

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _split_list(value)


class CacheConfig(_Section):
    """The record-and-replay cache of every external call the tools make."""

    mode: Literal["readwrite", "replay", "record", "off"] = Field(
        "readwrite",
        description="readwrite: use and fill; replay: no network, a miss is an error; record: refresh; off.",
        json_schema_extra=_aliases("GENSEARCHER_CACHE_MODE"),
    )
    dir: Path | None = Field(None, description="Cache folder (default: <output_dir>/web-cache).")
    max_age_s: float | None = Field(None, gt=0, description="Entries older than this count as misses.")


# The reference system's vendor defaults (model, size), shown by `gensearcher config` as effective_api_*.
VENDOR_DEFAULTS: dict[str, tuple[str, str | None]] = {
    "openai": ("gpt-image-1", "1024x1024"),
    "gemini": ("gemini-3-pro-image-preview", None),
    "seedream": ("doubao-seedream-4-5-251128", "2K"),
}


class GeneratorConfig(_Section):
    """The image generator: which backend, which model, and how it runs.

    The diffusers backend takes each model's settings from its preset (`gensearcher.generate.presets`: the
    reference system's settings per model family); the fields below marked "default: the preset's" override
    it for every call. A setting the model's pipeline does not take stops the run at startup.
    """

    backend: Literal["diffusers", "http", "openai", "gemini", "seedream"] | None = Field(
        None, description="Default: http when app_urls is set, else diffusers.",
        json_schema_extra=_aliases("GENSEARCHER_GENERATOR"),
    )
    model: str = Field("Qwen/Qwen-Image", description="diffusers: text-to-image model id or folder.")
    edit_model: str | None = Field(
        "Qwen/Qwen-Image-Edit-2509", description="diffusers: model for requests with reference images ('' for none)."
    )
    device: str = Field("cpu", description="diffusers: torch device.")
    dtype: str = Field("auto", description="diffusers: 'auto' (bfloat16 on GPU, float32 on CPU) or a torch dtype.")
    cpu_offload: bool = Field(False, description="diffusers: enable model CPU offload.")
    attention_backend: str | None = Field(None, description="diffusers: e.g. 'flash', 'sage', '_native_cudnn'.")
    trust_remote_code: bool = Field(
        False, description="Allow models that run their checkpoint's own Python code (HunyuanImage-3.0).",
    )
    edit_condition_pixels: int | None = Field(
        None, ge=256, description="Qwen-Image-Edit-2509: pixels the references are resized to for the text encoder "
        "(diffusers' 384*384; smaller is faster and lighter).",
    )
    edit_vae_pixels: int | None = Field(
        None, ge=256, description="Qwen-Image-Edit-2509: pixels the references are resized to for the VAE "
        "(diffusers' 1024*1024).",
    )
    max_references: int | None = Field(
        None, ge=0, description="References the backend accepts (default per backend or model preset, at most max_refs)."
    )
    steps: int | None = Field(None, ge=1, description="Denoising steps (default: the preset's; Qwen 50 text, 40 edit).")
    width: int | None = Field(None, ge=16, description="Output width (default: the preset's, else the model's).")
    height: int | None = Field(None, ge=16, description="Output height (default: the preset's, else the model's).")
    guidance_scale: float | None = Field(
        None, ge=0, description="guidance_scale of the pipeline: distilled guidance (FLUX, Qwen edit) or CFG "
        "(SD-3.5, Z-Image, Lumina, LongCat). Default: the preset's.",
    )
    true_cfg_scale: float | None = Field(
        None, ge=0, description="True classifier-free guidance (Qwen-Image, FLUX.1; above 1 doubles the compute). "
        "Default: the preset's (Qwen 4; FLUX off).",
    )
    negative_prompt: str | None = Field(None, description="Negative prompt (default: the preset's; Qwen ' ').")
    prompt_suffix: str | None = Field(
        None, description="Appended to every prompt (default: the preset's: ', Ultra HD, 4K, cinematic composition.' "
        "for Qwen-Image text-to-image, else none); '' disables it.",
    )
    seed: int = Field(0, description="Generation seed.")
    app_urls: list[str] = Field(
        default_factory=list, description="http: generator servers (JSON list or comma-separated).",
        json_schema_extra=_aliases("QWEN_EDIT_APP_URL"),
    )
    app_path: str = Field(
        "/generate", description="http: the generation path on each server.", json_schema_extra=_aliases("QWEN_EDIT_APP_PATH")
    )
    per_url_concurrency: int = Field(8, ge=1, description="http: requests in flight to one server.")
    server_token: SecretStr | None = Field(None, description="http: bearer token of our generator server.",
                                           json_schema_extra=_aliases("GENSEARCHER_SERVER_TOKEN"))
    api_key: SecretStr | None = Field(None, description="openai / gemini / seedream API key.")
    api_base_url: str | None = Field(None, description="openai / gemini / seedream endpoint (default: the vendor's).")
    api_model: str | None = Field(
        None, description="Vendor model (default: the reference system's: openai gpt-image-1, gemini "
        "gemini-3-pro-image-preview, seedream doubao-seedream-4-5-251128; see effective_api_model).",
    )
    api_size: str | None = Field(
        None, description="Vendor output size when the request sets no width and height: openai WxH or auto, "
        "seedream 1K/2K/4K or WxH, gemini imageSize 1K/2K/4K (default: openai 1024x1024, seedream 2K).",
    )
    timeout_s: float = Field(600.0, gt=0, description="Total time for one image, retries included.",
                             json_schema_extra=_aliases("GEN_IMAGE_TIMEOUT"))
    max_retries: int = Field(3, ge=0, description="Retries of one image on 429, 5xx, timeouts and connection errors.")
    concurrency: int = Field(
        1, ge=1, description="Images in flight in `generate` and `eval` (flags --concurrency, --generate-concurrency).",
        json_schema_extra=_aliases("GEN_API_CONCURRENCY"),
    )

    @field_validator("app_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("edit_model", mode="before")
    @classmethod
    def _no_edit_model(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    def resolved_backend(self) -> str:
        return self.backend or ("http" if self.app_urls else "diffusers")

    @computed_field(description="The vendor model the configured API backend uses (None for other backends).")  # type: ignore[prop-decorator]
    @property
    def effective_api_model(self) -> str | None:
        default = VENDOR_DEFAULTS.get(self.resolved_backend())
        return None if default is None else self.api_model or default[0]

    @computed_field(description="The vendor size the configured API backend asks for without width and height.")  # type: ignore[prop-decorator]
    @property
    def effective_api_size(self) -> str | None:
        default = VENDOR_DEFAULTS.get(self.resolved_backend())
        return None if default is None else self.api_size or default[1]


class ServerConfig(_Section):
    """`gensearcher serve`: the generator server."""

    host: str = Field("127.0.0.1", description="Bind address (the default keeps it local).")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on.")
    workers: int = Field(1, ge=1, description="Worker processes, one pipeline each (one per GPU).")
    devices: list[str] = Field(default_factory=list, description="Device per worker, e.g. cuda:0,cuda:1 (default cpu).")
    threads_per_worker: int | None = Field(None, ge=1, description="torch threads per worker (default: cores / CPU workers).")
    token: SecretStr | None = Field(None, description="Require 'Authorization: Bearer <token>'.",
                                    json_schema_extra=_aliases("GENSEARCHER_SERVER_TOKEN"))
    max_queue: int = Field(64, ge=1, description="Queued requests before 429.")
    request_timeout_s: float = Field(
        1800.0, gt=0, description="A generation running longer is killed with its worker (504); the worker restarts."
    )
    max_images: int = Field(4, ge=0, description="Input images per request.")
    max_image_bytes: int = Field(20_000_000, ge=1024, description="Bytes of one input image, decoded.")
    max_image_pixels: int = Field(40_000_000, ge=1024, description="Pixels of one input image, checked before decoding.")
    max_output_pixels: int = Field(4_194_304, ge=1024, description="Largest width x height a request may ask for.")
    fetch_image_urls: bool = Field(False, description="Accept http(s) image URLs (fetched by the hardened fetcher).")
    failure_threshold: int = Field(3, ge=1, description="Consecutive failures before a worker is reloaded.")
    max_body_bytes: int = Field(
        64_000_000, ge=1024,
        description="Largest request body (JSON or multipart), counted while it streams in and before anything "
                    "parses it; a larger Content-Length is refused (413) before reading. Base64 images take 4/3 "
                    "of their size.")
    max_prompt_chars: int = Field(
        16_000, ge=1, description="Longest prompt (and negative prompt) in characters; longer ones are refused "
                                  "(400), never truncated.")
    served_model_name: str | None = Field(
        None, description="The name in /v1/models and in requests' `model` (default: the last part of the "
                          "model's folder or id). The model's path is never shown to clients.")
    public_url: str | None = Field(
        None, description="Base URL of response_format=url links, e.g. https://gen.example.org (default: the "
                          "address the connection came in on; the client's Host header is never used).")

    @field_validator("devices", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _split_list(value)


class JudgeConfig(_Section):
    """The VLM judge of the benchmarks (any OpenAI-compatible vision model)."""

    base_url: str = Field(
        "https://api.openai.com/v1", description="OpenAI-compatible endpoint of the judge.",
        json_schema_extra=_aliases("GEN_REWARD_API_BASE_URL"),
    )
    model: str = Field("gpt-4.1", description="Judge model (a vision model).", json_schema_extra=_aliases("GEN_REWARD_MODEL"))
    api_key: SecretStr | None = Field(
        None, description="Bearer token of the judge endpoint.", json_schema_extra=_aliases("GEN_REWARD_API_KEY")
    )
    text_coef: float = Field(0.0, ge=0.0, le=1.0, description="Weight of the text-only judge in the RL reward.",
                             json_schema_extra=_aliases("GEN_REWARD_TEXT_COEF"))
    concurrency: int = Field(32, ge=1, description="Judge calls in flight.")
    max_tokens: int = Field(2048, ge=64, description="Generation cap of one judge answer.")
    max_retries: int = Field(5, ge=0, description="Retries on 429, 5xx and timeouts.")
    parse_retries: int = Field(2, ge=0, description="New calls when an answer cannot be parsed.")
    request_timeout_s: float = Field(300.0, gt=0, description="Timeout of one HTTP request to the judge.")
    deadline_s: float = Field(900.0, gt=0, description="Total time for one judgement, retries included.")
    image_pixels: int = Field(16_777_216, ge=4096, description="Pixel cap of the images sent to the judge.")


class RewardConfig(_Section):
    """The RL reward around the judge (read by training; the reference system's names are accepted)."""

    min_input_images: int = Field(
        1, ge=0, description="An answer citing fewer existing reference images gets reward 0 without generating.",
        json_schema_extra=_aliases("GEN_MIN_INPUT_IMAGES"),
    )
    max_input_images: int = Field(
        4, ge=0, description="An answer citing more existing reference images gets reward 0 without generating.",
        json_schema_extra=_aliases("GEN_MAX_INPUT_IMAGES"),
    )
    image_dir: Path | None = Field(
        None, description="Where the reward saves the images it generates (default: <output_dir>/reward-images).",
        json_schema_extra=_aliases("GEN_IMAGE_OUTPUT_DIR"),
    )

    @model_validator(mode="after")
    def _ordered(self) -> RewardConfig:
        if self.min_input_images > self.max_input_images:
            raise ValueError("min_input_images is larger than max_input_images")
        return self


class Settings(BaseSettings):
    """Everything gensearcher can be configured with."""

    model_config = SettingsConfigDict(extra="forbid", env_file=".env", toml_file="gensearcher.toml")

    output_dir: Path = Field(Path("outputs"), description="Default folder for runs.")
    max_refs: int = Field(
        5, ge=0, le=16, description="Most reference images an answer may cite; the generator uses the same cap."
    )
    reference_texts: Path | None = Field(
        None, description="The reference system's prompts and rubrics, as written by `gensearcher prompts "
        "import-reference` from your own checkout. When set, the agent sees exactly the reference's texts and "
        "framing (its system prompt replaces ours) and the judge uses its KnowGen and text-reward rubrics.",
    )
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)

    # The reference system's settings file, read below `.env` (None: not read).
    gen_image_file: ClassVar[Path | None] = Path(GEN_IMAGE_FILE)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        from pydantic_settings import TomlConfigSettingsSource

        env_file = settings_cls.model_config.get("env_file")
        gen_image_file = getattr(settings_cls, "gen_image_file", None)
        raw = [dict(os.environ), read_dotenv(Path(str(env_file))) if env_file else {},
               read_dotenv(gen_image_file) if gen_image_file is not None else {}]
        backend = generator_backend(raw)
        known = {name for names in all_env_names().values() for name in names}
        sources: list[PydanticBaseSettingsSource] = [init_settings]
        for index, values in enumerate(raw):
            whole_file = index == 2
            translated, ignored = translate(values, backend=backend, known=known, whole_file=whole_file)
            if ignored:
                logger.warning("%s: ignored %s", gen_image_file, "; ".join(ignored))
            sources.append(NamedEnvSource(settings_cls, translated))
        return (*sources, TomlConfigSettingsSource(settings_cls))

    # -- validation before work starts ---------------------------------------------------------------

    def resolved_policy_backend(self) -> Literal["openai", "transformers"]:
        """Which policy backend runs, after checking that it has what it needs."""
        policy = self.policy
        backend = policy.backend
        if backend == "auto":
            backend = "openai" if policy.base_url else "transformers"
        if backend == "openai":
            if not policy.base_url:
                raise ConfigError(f"{env_name('policy', 'base_url')} is not set (the policy endpoint).")
            if not policy.model:
                raise ConfigError(f"{env_name('policy', 'model')} is not set (the served model name).")
        elif not policy.model:
            raise ConfigError(
                f"no policy configured: set {env_name('policy', 'base_url')} for an OpenAI-compatible server, "
                f"or {env_name('policy', 'model')} to a local checkpoint for the in-process backend."
            )
        return backend

    def masked(self) -> dict[str, Any]:
        """The configuration as plain data, secrets replaced by '***' (or None when unset)."""
        return _mask(self.model_dump(mode="python"))


def _split_list(value: Any) -> Any:
    """A list setting from the environment: a JSON list or a comma-separated string."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def all_env_names() -> dict[str, list[str]]:
    """Every setting's dotted path and the environment names it is read from (for docs and `config`)."""
    return {f"{section}.{field}" if section else field: env_names(section, field, info)
            for section, field, info in leaf_fields(Settings)}


def _mask(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "***" if value.get_secret_value() else None
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def load_settings(
    overrides: dict[str, Any] | None = None,
    *,
    config_file: Path | None = None,
    env_file: Path | None = Path(".env"),
    gen_image_file: Path | None = Path(GEN_IMAGE_FILE),
) -> Settings:
    """Build the settings from all sources. Raises ConfigError with the offending setting named.

    `env_file` and `gen_image_file` (the reference system's `.env.gen_image`) are read from the working
    folder by default; None skips one. Every variable of the latter is mapped to a setting or named in
    one warning line with the reason it is ignored.
    """
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file not found: {config_file}")
    cls: type[Settings] = Settings
    if config_file is not None or env_file != Path(".env") or gen_image_file != Path(GEN_IMAGE_FILE):
        config = SettingsConfigDict(**{**Settings.model_config, "env_file": env_file,
                                       "toml_file": config_file or "gensearcher.toml"})
        cls = type("Settings", (Settings,), {"model_config": config, "gen_image_file": gen_image_file})
    try:
        return cls(**_drop_none(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(exc)) from None


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    """CLI flags that were not given are None; only the given ones override."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            nested = _drop_none(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out


def _describe_validation_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = [str(part) for part in first["loc"]]
    name = env_name(loc[0], loc[1]) if len(loc) >= 2 else env_name(None, loc[0]) if loc else "settings"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    # Never echo the input: it may be a secret.
    return f"invalid setting {name}: {first['msg']}{more}"
