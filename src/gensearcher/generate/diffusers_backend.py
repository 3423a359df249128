"""In-process generation: diffusers pipelines (Qwen-Image, Qwen-Image-Edit-2509, FLUX, SD-3.5, Z-Image,
Lumina-Image 2.0, LongCat-Image, any other text-to-image or edit pipeline) and HunyuanImage-3.0 through
transformers, each called with its preset's arguments (`presets.py`).

`PipelineSet` reads each model's pipeline class at construction, checks the planned call against the
pipeline's signature (a parameter it does not take is a ConfigError naming the model and the parameter),
loads each pipeline once on first use, and records exactly the arguments each call was given. The server's
worker processes use the same class. `DiffusersGenerator` is the `Generator` on top of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gensearcher.errors import ConfigError, GenerationError
from gensearcher.generate.base import GenerationRequest, GenerationResult, png_bytes, split_references
from gensearcher.generate.presets import (
    CallPreset,
    ModelPreset,
    Overrides,
    call_arguments,
    choose_preset,
    pipeline_class_of,
)

logger = logging.getLogger(__name__)

EDIT_MAX_REFERENCES = 3  # Qwen-Image-Edit-2509 is trained on one to three input images
# diffusers reads the Qwen edit resize targets from module constants at call time; we set them only around
# our own calls and hold this lock, so no other call in the process sees them.
_EDIT_SIZES_LOCK = threading.Lock()


@dataclass
class Slot:
    """One configured model: its pipeline class, preset and the call it gets."""

    model: str
    class_name: str
    loader: str
    preset: ModelPreset
    role: str  # "text" or "edit"
    call: CallPreset

    @property
    def passing(self) -> str:
        return self.preset.references if self.role == "edit" else "none"


class PipelineSet:
    """The text-to-image pipeline and (optionally) the edit pipeline of one device.

    Args:
        model: text-to-image model id or folder (an edit pipeline here serves requests with images only).
        edit_model: model for requests with references (None: references are dropped, and recorded so).
        device, dtype, cpu_offload, attention_backend: how the pipelines run.
        overrides: configuration values replacing the presets' in every call.
        trust_remote_code: allow HunyuanImage-3.0 (its checkpoint ships the model's Python code).
        edit_condition_pixels, edit_vae_pixels: Qwen-Image-Edit-2509's input resize targets for this set's
            calls (smaller is faster and lighter).
    """

    def __init__(self, *, model: str | None, edit_model: str | None, device: str = "cpu", dtype: str = "auto",
                 cpu_offload: bool = False, attention_backend: str | None = None, overrides: Overrides | None = None,
                 trust_remote_code: bool = False, edit_condition_pixels: int | None = None,
                 edit_vae_pixels: int | None = None):
        self.device = device
        self.dtype = dtype
        self.cpu_offload = cpu_offload
        self.attention_backend = attention_backend
        self.overrides = overrides or Overrides()
        self.trust_remote_code = trust_remote_code
        self.edit_sizes = {"CONDITION_IMAGE_SIZE": edit_condition_pixels, "VAE_IMAGE_SIZE": edit_vae_pixels}
        self.slots: dict[str, Slot] = {}
        for name, wanted in ((model, "text"), (edit_model, "edit")):
            if name is not None:
                self._add_slot(name, wanted)
        self._pipelines: dict[str, Any] = {}

    @property
    def model(self) -> str | None:
        return self.slots["text"].model if "text" in self.slots else None

    @property
    def edit_model(self) -> str | None:
        return self.slots["edit"].model if "edit" in self.slots else None

    @property
    def max_references(self) -> int:
        return self.slots["edit"].preset.max_references if "edit" in self.slots else 0

    def _add_slot(self, name: str, wanted: str) -> None:
        class_name, loader = pipeline_class_of(name)
        preset, role = choose_preset(name, class_name)
        if wanted == "edit" and role == "text":
            raise ConfigError(f"the edit model {name} is a text-to-image pipeline ({class_name}): it takes no references")
        if role in self.slots and self.slots[role].model == name:
            return  # `serve --model X --edit-model X`
        if role in self.slots:
            raise ConfigError(f"{name} and {self.slots[role].model} are both {role} pipelines")
        if loader == "transformers" and not self.trust_remote_code:
            raise ConfigError(f"{name} ({class_name}) runs its checkpoint's own code: set "
                              "GENSEARCHER_GENERATOR_TRUST_REMOTE_CODE=true if you trust it")
        call = preset.edit if role == "edit" else preset.text
        assert call is not None  # every preset role has its call
        slot = Slot(model=name, class_name=class_name, loader=loader, preset=preset, role=role, call=call)
        if any(self.edit_sizes.values()) and role == "edit" and class_name != "QwenImageEditPlusPipeline":
            raise ConfigError(f"generator.edit_condition_pixels / edit_vae_pixels apply to QwenImageEditPlusPipeline, "
                              f"not {class_name} ({name})")
        if loader == "diffusers":
            _check_call(slot, _diffusers_signature(slot), call_arguments(call, loader, name, self.overrides))
        else:
            call_arguments(call, loader, name, self.overrides)  # the mapping's own checks, before any load
        self.slots[role] = slot

    def preload(self) -> dict[str, bool]:
        """Load every configured pipeline now; returns which kinds of request this set can serve."""
        for role in self.slots:
            self._pipeline(role)
        return {"text": "text" in self.slots, "edit": "edit" in self.slots}

    def pipeline(self, edit: bool) -> Any:
        return self._pipeline("edit" if edit else "text")

    def _pipeline(self, role: str) -> Any:
        if role not in self.slots:
            kind = "an edit model for requests with reference images" if role == "edit" else "a text-to-image model"
            raise GenerationError(f"no {kind} is configured")
        if role not in self._pipelines:
            slot = self.slots[role]
            self._pipelines[role] = self._load_transformers(slot) if slot.loader == "transformers" else self._load(slot)
        return self._pipelines[role]

    def _load(self, slot: Slot) -> Any:
        import diffusers

        dtype = _torch_dtype(self.dtype, self.device)
        started = time.monotonic()
        try:
            pipe = diffusers.DiffusionPipeline.from_pretrained(slot.model, dtype=dtype)
        except (OSError, ValueError, TypeError, ImportError, AttributeError) as exc:
            pipe = _load_without_video_processor(slot.model, dtype, exc)
        if self.cpu_offload:
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        if self.attention_backend and hasattr(pipe, "transformer"):
            pipe.transformer.set_attention_backend(self.attention_backend)
        pipe.set_progress_bar_config(disable=True)
        logger.info("loaded %s (%s) on %s in %.1f s", slot.model, slot.preset.family, self.device,
                    time.monotonic() - started)
        return pipe

    def _load_transformers(self, slot: Slot) -> Any:
        """HunyuanImage-3.0 as its model card runs it: AutoModelForCausalLM with the checkpoint's code,
        spread over the visible GPUs, then `load_tokenizer` and `generate_image`."""
        from transformers import AutoModelForCausalLM

        placement = {"device_map": "auto"} if self.device.startswith("cuda") else {}
        try:
            # The checkpoint's own code: its methods (load_tokenizer, generate_image) are not known statically.
            model: Any = AutoModelForCausalLM.from_pretrained(
                slot.model, trust_remote_code=True, attn_implementation="sdpa", moe_impl="eager",
                dtype=_torch_dtype(self.dtype, self.device), **placement)
            model.load_tokenizer(slot.model)
        except (OSError, ValueError, TypeError, ImportError, AttributeError) as exc:
            raise ConfigError(f"cannot load the transformers model {slot.model!r}: {exc}") from None
        method = getattr(model, "generate_image", None)
        if method is None:
            raise ConfigError(f"{slot.model} ({slot.class_name}) has no generate_image method")
        _check_call(slot, inspect.signature(method).parameters,
                    call_arguments(slot.call, slot.loader, slot.model, self.overrides))
        return model

    def run(self, prompt: str, images: list[Any], params: dict[str, Any]) -> Any:
        """One image (PIL). Blocking: call it from a worker thread or process."""
        return self.generate(prompt, images, params)[0]

    def generate(self, prompt: str, images: list[Any], params: dict[str, Any],
                 image_names: list[str] | None = None) -> tuple[Any, dict[str, Any]]:
        """One image (PIL) and the arguments the pipeline was called with (images as `image_names`, the
        generator as its seed). `params` holds request values by our field names plus `seed`; None (or a
        missing key) means the preset's or the configuration's value. Blocking."""
        import torch

        role = "edit" if images else "text"
        if role not in self.slots:
            raise GenerationError("no edit model is configured" if images else "no text-to-image model is configured")
        slot = self.slots[role]
        try:
            arguments, suffix, sources = call_arguments(slot.call, slot.loader, slot.model, self.overrides, params)
        except ConfigError as exc:  # the request asked for it, so the item fails, not the run
            raise GenerationError(str(exc)) from None
        pipe = self._pipeline(role)
        seed = int(params.get("seed") or 0)
        kwargs: dict[str, Any] = {"prompt": prompt + suffix, **arguments}
        record: dict[str, Any] = {"prompt": prompt + suffix, **arguments}
        names = image_names or [f"reference {index + 1}" for index in range(len(images))]
        if slot.passing == "first" or (slot.passing == "auto" and len(images) == 1):
            kwargs["image"], record["image"] = images[0], names[0]
        elif images:
            kwargs["image"], record["image"] = list(images), list(names)
        if slot.loader == "transformers":
            kwargs["seed"] = record["seed"] = seed
            accepted = inspect.signature(pipe.generate_image).parameters
        else:
            kwargs["generator"] = torch.Generator(device="cpu").manual_seed(seed)
            record["generator"] = {"device": "cpu", "manual_seed": seed}
            accepted = _diffusers_signature(slot)
        _check_call(slot, accepted, (kwargs, suffix, {**sources, "image": "the request", "seed": "the request"}),
                    error=GenerationError)
        with torch.inference_mode(), self._edit_sizes(slot):
            if slot.loader == "transformers":
                return pipe.generate_image(**kwargs), record
            return pipe(**kwargs).images[0], record

    @contextlib.contextmanager
    def _edit_sizes(self, slot: Slot) -> Iterator[None]:
        if slot.class_name != "QwenImageEditPlusPipeline":
            yield
            return
        import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus as module

        with _EDIT_SIZES_LOCK:
            saved = {name: getattr(module, name) for name in self.edit_sizes}
            try:
                for name, value in self.edit_sizes.items():
                    if value:
                        setattr(module, name, value)
                yield
            finally:
                for name, value in saved.items():
                    setattr(module, name, value)

    def settings(self, role: str) -> dict[str, Any]:
        """What shapes a call besides its arguments (recorded with the result)."""
        slot = self.slots[role]
        out: dict[str, Any] = {"pipeline": slot.class_name, "preset": slot.preset.family}
        if slot.class_name == "QwenImageEditPlusPipeline":
            out.update({name.lower(): value for name, value in self.edit_sizes.items() if value})
        return out


def _diffusers_signature(slot: Slot) -> Any:
    import diffusers

    cls = getattr(diffusers, slot.class_name, None)
    if cls is None:
        raise ConfigError(f"{slot.model}: diffusers {diffusers.__version__} has no pipeline class {slot.class_name}")
    return inspect.signature(cls.__call__).parameters


def _check_call(slot: Slot, accepted: Any, planned: tuple[dict[str, Any], str, dict[str, str]],
                error: type[Exception] = ConfigError) -> None:
    """Every planned argument must be a parameter of the call (a **kwargs catch-all takes any)."""
    arguments, _, sources = planned
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return
    needed = ["prompt", *arguments] + (["image"] if slot.role == "edit" else [])
    for name in needed:
        if name not in accepted:
            origin = sources.get(name, "the pipeline call")
            raise error(f"{slot.model} ({slot.class_name}) does not take {name!r} (set by {origin}, "
                        f"{slot.preset.family} preset)")


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

    class Qwen2VLImageOnlyProcessor(Qwen2VLProcessor):
        def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs: Any):
            super().__init__(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                             chat_template=chat_template, **kwargs)

    return Qwen2VLImageOnlyProcessor


def _load_without_video_processor(name: str, dtype: Any, first_error: Exception) -> Any:
    """Load again with every Qwen2-VL processor of the pipeline (Qwen edit, LongCat) as the image-only one:
    without torchvision the stock processor cannot load. Anything else is the first error, explained."""
    import diffusers

    from gensearcher.generate.presets import read_model_index

    index = read_model_index(name) or {}
    parts = [key for key, value in index.items()
             if isinstance(value, list) and len(value) == 2 and value[1] in ("Qwen2VLProcessor", "Qwen2_5_VLProcessor")]
    if not parts:
        raise ConfigError(f"cannot load the diffusers model {name!r}: {first_error}") from None
    try:
        local = Path(name)
        loaded = {}
        for part in parts:
            source, extra = (str(local / part), {}) if local.is_dir() else (name, {"subfolder": part})
            loaded[part] = image_only_processor_class().from_pretrained(source, **extra)
        return diffusers.DiffusionPipeline.from_pretrained(name, dtype=dtype, **loaded)
    except (OSError, ValueError, TypeError, ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load the diffusers model {name!r}: {first_error}; then: {exc}") from None


class DiffusersGenerator:
    """Generates in this process. The pipelines are loaded on the first request and reused."""

    name = "diffusers"

    def __init__(self, pipelines: PipelineSet, *, max_references: int | None = None):
        self.pipelines = pipelines
        limit = pipelines.max_references if max_references is None else max_references
        if "edit" in pipelines.slots and pipelines.slots["edit"].passing == "first" and limit > 1:
            raise ConfigError(f"{pipelines.edit_model} takes one reference image (the first); "
                              f"generator.max_references={limit} is more")
        self.max_references = limit if pipelines.edit_model else 0
        self._lock = asyncio.Lock()

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        from gensearcher.generate.references import load_references

        kept, dropped = split_references(request, self.max_references)
        images = load_references(kept)
        started = time.monotonic()
        async with self._lock:  # one pipeline, one call at a time
            try:
                image, record = await asyncio.to_thread(self.pipelines.generate, request.prompt, images,
                                                        request.explicit(), kept)
            except (GenerationError, ConfigError):
                raise
            except Exception as exc:
                raise GenerationError(f"the pipeline failed: {type(exc).__name__}: {exc}") from exc
        data, width, height = png_bytes(image)
        role = "edit" if images else "text"
        return GenerationResult(image_png=data, width=width, height=height, backend=self.name,
                                model=self.pipelines.slots[role].model, used_images=kept, dropped_references=dropped,
                                parameters=record, pipeline_settings=self.pipelines.settings(role),
                                seconds=time.monotonic() - started)

    async def aclose(self) -> None:
        self.pipelines._pipelines.clear()
