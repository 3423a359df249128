"""In-process generation with diffusers: Qwen-Image (text only), Qwen-Image-Edit-2509 (with references),
or any diffusers text-to-image pipeline (FLUX, SD3.5, Z-Image ...) by model id or folder.

`PipelineSet` loads each pipeline once, on first use, and runs one call at a time; the server's worker
processes use the same class. `DiffusersGenerator` is the `Generator` on top of it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from pathlib import Path
from typing import Any

from gensearcher.errors import ConfigError, GenerationError
from gensearcher.generate.base import GenerationRequest, GenerationResult, png_bytes, split_references

logger = logging.getLogger(__name__)

EDIT_MAX_REFERENCES = 3  # Qwen-Image-Edit-2509 is trained on one to three input images


class PipelineSet:
    """The text-to-image pipeline and (optionally) the edit pipeline of one device.

    Args:
        model: text-to-image model id or folder.
        edit_model: image-edit model for requests with references (None: references are dropped).
        device, dtype, cpu_offload, attention_backend: how the pipelines run.
        edit_condition_pixels, edit_vae_pixels: override the edit pipeline's input resize targets
            (module constants in diffusers; smaller is faster and lighter).
    """

    def __init__(self, *, model: str | None, edit_model: str | None, device: str = "cpu", dtype: str = "auto",
                 cpu_offload: bool = False, attention_backend: str | None = None,
                 edit_condition_pixels: int | None = None, edit_vae_pixels: int | None = None):
        self.model = model
        self.edit_model = edit_model
        self.device = device
        self.dtype = dtype
        self.cpu_offload = cpu_offload
        self.attention_backend = attention_backend
        self.edit_condition_pixels = edit_condition_pixels
        self.edit_vae_pixels = edit_vae_pixels
        self._pipelines: dict[str, Any] = {}

    def preload(self) -> dict[str, bool]:
        """Load every configured pipeline now; returns which kinds of request this set can serve.

        A `model` that is itself an edit pipeline (e.g. `serve --model Qwen/Qwen-Image-Edit-2509`) serves
        requests with images only.
        """
        if self.model is not None:
            pipe = self.pipeline(edit=False)
            if "Edit" in type(pipe).__name__:
                self._pipelines["edit"] = pipe
                del self._pipelines["text"]
                self.edit_model, self.model = self.edit_model or self.model, None
        if self.edit_model is not None:
            self.pipeline(edit=True)
        return {"text": "text" in self._pipelines, "edit": "edit" in self._pipelines}

    def pipeline(self, edit: bool) -> Any:
        key = "edit" if edit else "text"
        if key not in self._pipelines:
            name = self.edit_model if edit else self.model
            if name is None:
                kind = "an edit model for requests with reference images" if edit else "a text-to-image model"
                raise GenerationError(f"no {kind} is configured")
            self._pipelines[key] = self._load(name, edit)
        return self._pipelines[key]

    def _load(self, name: str, edit: bool) -> Any:
        try:
            from diffusers import DiffusionPipeline
        except ImportError:
            raise ConfigError("the diffusers generator needs torch and diffusers: pip install 'gensearcher[generate]'") from None
        dtype = _torch_dtype(self.dtype, self.device)
        started = time.monotonic()
        try:
            pipe = DiffusionPipeline.from_pretrained(name, dtype=dtype)
        except (OSError, ValueError, TypeError, ImportError, AttributeError) as exc:
            if not edit:
                raise ConfigError(f"cannot load the diffusers model {name!r}: {exc}") from None
            pipe = _load_edit_without_video_processor(name, dtype, exc)
        if edit:
            self._apply_edit_sizes()
        if self.cpu_offload:
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        if self.attention_backend and hasattr(pipe, "transformer"):
            pipe.transformer.set_attention_backend(self.attention_backend)
        pipe.set_progress_bar_config(disable=True)
        logger.info("loaded %s on %s in %.1f s", name, self.device, time.monotonic() - started)
        return pipe

    def _apply_edit_sizes(self) -> None:
        import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus as edit_plus

        if self.edit_condition_pixels:
            edit_plus.CONDITION_IMAGE_SIZE = self.edit_condition_pixels
        if self.edit_vae_pixels:
            edit_plus.VAE_IMAGE_SIZE = self.edit_vae_pixels

    def run(self, prompt: str, images: list[Any], params: dict[str, Any]) -> Any:
        """One image (PIL). Blocking: call it from a worker thread or process."""
        import torch

        pipe = self.pipeline(edit=bool(images))
        accepted = inspect.signature(pipe.__call__).parameters
        kwargs: dict[str, Any] = {
            "prompt": prompt,
            "num_inference_steps": params["steps"],
            "generator": torch.Generator(device="cpu").manual_seed(params["seed"]),
        }
        if images:
            kwargs["image"] = images
        optional = {"negative_prompt": params.get("negative_prompt"), "height": params.get("height"),
                    "width": params.get("width"), "true_cfg_scale": params.get("true_cfg_scale"),
                    "guidance_scale": params.get("guidance_scale")}
        if "true_cfg_scale" not in accepted and optional["guidance_scale"] is None:
            optional["guidance_scale"] = params.get("true_cfg_scale")  # FLUX, SD3: one guidance knob
        if not getattr(getattr(pipe, "transformer", None), "config", {}).get("guidance_embeds", True):
            optional["guidance_scale"] = None  # not guidance-distilled: the pipeline would ignore it (with a warning)
        kwargs.update({key: value for key, value in optional.items() if value is not None and key in accepted})
        with torch.inference_mode():
            output = pipe(**kwargs)
        return output.images[0]


def _torch_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ConfigError(f"unknown torch dtype {name!r}")
    return dtype


def image_only_processor_class() -> Any:
    """Qwen2VLProcessor without a video processor (which needs torchvision). Images are all the edit
    pipeline uses; ProcessorMixin derives its parts from __init__'s signature, so leaving the video
    processor out of it is what makes this load."""
    from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor

    class Qwen2VLImageOnlyProcessor(Qwen2VLProcessor):  # type: ignore[misc]
        def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs: Any):
            super().__init__(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                             chat_template=chat_template, **kwargs)

    return Qwen2VLImageOnlyProcessor


def _load_edit_without_video_processor(name: str, dtype: Any, first_error: Exception) -> Any:
    from diffusers import QwenImageEditPlusPipeline

    try:
        local = Path(name)
        source = str(local / "processor") if local.is_dir() else name
        extra = {} if local.is_dir() else {"subfolder": "processor"}
        processor = image_only_processor_class().from_pretrained(source, **extra)
        return QwenImageEditPlusPipeline.from_pretrained(name, dtype=dtype, processor=processor)
    except (OSError, ValueError, TypeError, ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load the edit model {name!r}: {first_error}; then: {exc}") from None


class DiffusersGenerator:
    """Generates in this process. The pipelines are loaded on the first request and reused."""

    name = "diffusers"

    def __init__(self, pipelines: PipelineSet, *, max_references: int = EDIT_MAX_REFERENCES):
        self.pipelines = pipelines
        self.max_references = max_references if pipelines.edit_model else 0
        self._lock = asyncio.Lock()

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        from gensearcher.generate.references import load_references

        kept, dropped = split_references(request, self.max_references)
        images = load_references(kept)
        params = request.resolved(with_references=bool(images))
        started = time.monotonic()
        async with self._lock:  # one pipeline, one call at a time
            try:
                image = await asyncio.to_thread(self.pipelines.run, request.prompt, images, params)
            except (GenerationError, ConfigError):
                raise
            except Exception as exc:
                raise GenerationError(f"the diffusers pipeline failed: {type(exc).__name__}: {exc}") from exc
        data, width, height = png_bytes(image)
        model = self.pipelines.edit_model if images else self.pipelines.model
        return GenerationResult(image_png=data, width=width, height=height, backend=self.name, model=model,
                                used_images=kept, dropped_references=dropped, parameters=params,
                                seconds=time.monotonic() - started)

    async def aclose(self) -> None:
        self.pipelines._pipelines.clear()
