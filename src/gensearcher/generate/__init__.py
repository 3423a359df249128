"""Image generation: the interface (`base`) and its backends, chosen by `GENSEARCHER_GENERATOR`.

    diffusers   in-process pipelines, each with its model preset (presets.py): Qwen-Image,     diffusers_backend.py
                Qwen-Image-Edit-2509, FLUX, SD-3.5, Z-Image, Lumina 2, LongCat, HunyuanImage-3.0, any other
    http        our generator server or the reference system's /generate servers            http_backend.py
    openai      the OpenAI Images API (generations, edits)                                  openai_images.py
    gemini      Gemini image generation (generateContent)                                   gemini.py
    seedream    Seedream 4.x through the Volcengine Ark images API                          seedream.py
"""

from __future__ import annotations

from typing import Any

from gensearcher.config import GeneratorConfig, Settings, env_name
from gensearcher.errors import ConfigError
from gensearcher.generate.base import (
    DroppedReference,
    GenerationRequest,
    GenerationResult,
    Generator,
    answer_request,
)

__all__ = ["DroppedReference", "GenerationRequest", "GenerationResult", "Generator", "answer_request", "build_generator",
           "pipeline_arguments"]


def pipeline_arguments(config: GeneratorConfig, *, model: str | None, edit_model: str | None) -> dict[str, Any]:
    """The `PipelineSet` arguments of the generator settings (all but the device), for the in-process
    backend and for the server's worker processes alike."""
    from gensearcher.generate.presets import Overrides

    return {"model": model, "edit_model": edit_model, "dtype": config.dtype, "cpu_offload": config.cpu_offload,
            "attention_backend": config.attention_backend, "overrides": Overrides.from_config(config),
            "trust_remote_code": config.trust_remote_code, "edit_condition_pixels": config.edit_condition_pixels,
            "edit_vae_pixels": config.edit_vae_pixels}


def build_generator(settings: Settings) -> Generator:
    """The configured generator. Raises ConfigError (naming the setting) before any work starts."""
    config = settings.generator
    backend = config.resolved_backend()
    cap = settings.max_refs

    def limit(default: int) -> int:
        return min(cap, config.max_references if config.max_references is not None else default)

    if backend == "diffusers":
        from gensearcher.generate.diffusers_backend import DiffusersGenerator, PipelineSet

        # Reads each model's pipeline class and checks its calls now: a bad setting stops before any work.
        pipelines = PipelineSet(**pipeline_arguments(config, model=config.model, edit_model=config.edit_model),
                                device=config.device)
        return DiffusersGenerator(pipelines, max_references=limit(pipelines.max_references))
    if backend == "http":
        if not config.app_urls:
            raise ConfigError(f"{env_name('generator', 'app_urls')} (or QWEN_EDIT_APP_URL) is not set (the generator servers).")
        from gensearcher.generate.http_backend import HttpGenerator

        return HttpGenerator(config, max_references=limit(3))
    if config.api_key is None:
        raise ConfigError(f"{env_name('generator', 'api_key')} is not set (the {backend} API key).")
    from gensearcher.web import Fetcher

    fetcher = Fetcher(settings.fetch)  # for image URLs an API may answer with
    if backend == "openai":
        from gensearcher.generate.openai_images import OpenAIImagesGenerator

        return OpenAIImagesGenerator(config, max_references=limit(16), fetcher=fetcher)
    if backend == "gemini":
        from gensearcher.generate.gemini import GeminiGenerator

        return GeminiGenerator(config, max_references=limit(14), fetcher=fetcher)
    if backend == "seedream":
        from gensearcher.generate.seedream import SeedreamGenerator

        return SeedreamGenerator(config, max_references=limit(10), fetcher=fetcher)
    raise ConfigError(f"{env_name('generator', 'backend')}={backend!r} is not a generator backend")
