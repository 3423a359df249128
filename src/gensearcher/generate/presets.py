"""Model presets: how the reference system calls each model family, as one small typed table.

A preset names the pipeline classes of a family, the arguments the reference system passes for text-to-image
and for edit calls, how many reference images it takes and how they are passed, and a prompt suffix. The
preset is chosen from the pipeline's class (`_class_name` in `model_index.json`, or `architectures` in a
transformers `config.json`), then a variant by a substring of the model id or folder (FLUX.1-Krea, SD-3.5
medium, Z-Image-Turbo), as the reference system does. Any other diffusers pipeline gets the generic preset:
no arguments beyond the prompt, the seed and what the configuration sets.

Each argument is then overridden, in order, by the configuration (`generator.*`) and the request. The call
is checked against the pipeline's signature before any weights load: a parameter the pipeline does not take
is an error naming the model and the parameter, never silently dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gensearcher.errors import ConfigError

Scalar = str | int | float | bool


class CallPreset(BaseModel):
    """The arguments of one kind of call (text-to-image or edit). None: not passed (the pipeline's default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int | None = Field(None, description="num_inference_steps.")
    width: int | None = None
    height: int | None = None
    true_cfg_scale: float | None = Field(None, description="True CFG (a second, negative pass per step).")
    guidance_scale: float | None = None
    negative_prompt: str | None = None
    prompt_suffix: str = Field("", description="Appended to the prompt.")
    extra: dict[str, Scalar] = Field({}, description="Family-specific pipeline arguments (e.g. cfg_trunc_ratio).")


class ModelPreset(BaseModel):
    """One model family as the reference system runs it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: str
    loader: Literal["diffusers", "transformers"] = "diffusers"
    text_pipelines: tuple[str, ...] = Field((), description="Classes of its text-to-image pipelines.")
    edit_pipelines: tuple[str, ...] = Field((), description="Classes of its pipelines taking reference images.")
    name_contains: tuple[str, ...] = Field((), description="Lower-case substrings of the model id that pick it.")
    text: CallPreset | None = None
    edit: CallPreset | None = None
    max_references: int = Field(0, description="Reference images an edit call takes.")
    references: Literal["none", "list", "first", "auto"] = Field(
        "none", description="How they are passed as `image`: a list, the first reference alone, or (auto) the "
        "image alone when there is one and a list when there are more.")


QWEN_SUFFIX = ", Ultra HD, 4K, cinematic composition."
_QWEN_EDIT = CallPreset(steps=40, true_cfg_scale=4.0, guidance_scale=1.0, negative_prompt=" ")

PRESETS: tuple[ModelPreset, ...] = (
    ModelPreset(family="qwen-image", text_pipelines=("QwenImagePipeline",),
                text=CallPreset(steps=50, width=1664, height=928, true_cfg_scale=4.0, negative_prompt=" ",
                                prompt_suffix=QWEN_SUFFIX)),
    ModelPreset(family="qwen-image-edit-plus", edit_pipelines=("QwenImageEditPlusPipeline",), edit=_QWEN_EDIT,
                max_references=3, references="list"),  # 2509 and later are trained on one to three images
    ModelPreset(family="qwen-image-edit", edit_pipelines=("QwenImageEditPipeline",), edit=_QWEN_EDIT,
                max_references=1, references="first"),
    ModelPreset(family="flux.1-krea", text_pipelines=("FluxPipeline",), name_contains=("krea",),
                text=CallPreset(steps=50, width=1024, height=1024, guidance_scale=4.5)),
    ModelPreset(family="flux.1-dev", text_pipelines=("FluxPipeline",),
                text=CallPreset(steps=50, width=1024, height=1024, guidance_scale=3.5)),
    ModelPreset(family="flux.2-klein", text_pipelines=("Flux2KleinPipeline",),
                text=CallPreset(steps=4, width=1024, height=1024, guidance_scale=1.0)),
    ModelPreset(family="sd-3.5-medium", text_pipelines=("StableDiffusion3Pipeline",), name_contains=("medium",),
                text=CallPreset(steps=40, guidance_scale=4.5)),
    ModelPreset(family="sd-3.5-large", text_pipelines=("StableDiffusion3Pipeline",),
                text=CallPreset(steps=28, guidance_scale=3.5)),
    ModelPreset(family="z-image-turbo", text_pipelines=("ZImagePipeline",), name_contains=("turbo",),
                text=CallPreset(steps=9, width=1024, height=1024, guidance_scale=0.0)),
    ModelPreset(family="z-image", text_pipelines=("ZImagePipeline",),
                text=CallPreset(steps=50, width=720, height=1280, guidance_scale=4.0)),
    ModelPreset(family="lumina-image-2.0", text_pipelines=("Lumina2Pipeline",),
                text=CallPreset(steps=50, width=1024, height=1024, guidance_scale=4.0,
                                extra={"cfg_trunc_ratio": 0.25})),
    ModelPreset(family="longcat-image", text_pipelines=("LongCatImagePipeline",),
                edit_pipelines=("LongCatImageEditPipeline",),
                text=CallPreset(steps=50, width=1344, height=768, guidance_scale=4.0,
                                extra={"enable_cfg_renorm": True, "enable_prompt_rewrite": True}),
                edit=CallPreset(steps=50, guidance_scale=4.5), max_references=1, references="first"),
    ModelPreset(family="hunyuanimage-3.0", loader="transformers", text_pipelines=("HunyuanImage3ForCausalMM",),
                text=CallPreset()),
)
GENERIC = ModelPreset(family="generic", text=CallPreset(), edit=CallPreset(), max_references=1, references="auto")


def pipeline_class_of(model: str) -> tuple[str, Literal["diffusers", "transformers"]]:
    """The pipeline class a model folder or hub id declares: `_class_name` of `model_index.json`, else the
    first of `architectures` in `config.json`. Reads one small file (downloads it for a hub id)."""
    for filename, loader in (("model_index.json", "diffusers"), ("config.json", "transformers")):
        data = _read_json(model, filename)
        if data is None:
            continue
        name = data.get("_class_name") if loader == "diffusers" else (data.get("architectures") or [None])[0]
        if isinstance(name, str) and name:
            return name, loader  # type: ignore[return-value]
    raise ConfigError(f"cannot load the diffusers model {model!r}: no model_index.json (or config.json with "
                      "architectures) in the folder or hub repository")


def read_model_index(model: str) -> dict[str, Any] | None:
    """`model_index.json` of a diffusers folder or hub id, or None."""
    return _read_json(model, "model_index.json")


def _read_json(model: str, filename: str) -> dict[str, Any] | None:
    local = Path(model)
    if local.is_dir():
        path = local / filename
    elif local.exists() or model.count("/") != 1:
        return None
    else:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache
        from huggingface_hub.errors import EntryNotFoundError

        try:
            cached = try_to_load_from_cache(model, filename)
            path = Path(cached) if isinstance(cached, str) else Path(hf_hub_download(model, filename))
        except (OSError, ValueError, EntryNotFoundError):  # not found, offline, gated: try the next file or explain
            return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def choose_preset(model: str, class_name: str) -> tuple[ModelPreset, Literal["text", "edit"]]:
    """The preset of a model and the role its pipeline plays (text-to-image or edit)."""
    lowered = model.lower()
    for preset in PRESETS:
        roles = [role for role, classes in (("text", preset.text_pipelines), ("edit", preset.edit_pipelines))
                 if class_name in classes]
        if roles and (not preset.name_contains or any(part in lowered for part in preset.name_contains)):
            return preset, roles[0]  # type: ignore[return-value]
    edit_like = any(word in class_name for word in ("Edit", "Kontext", "Img2Img"))
    return GENERIC, "edit" if edit_like else "text"


class Overrides(BaseModel):
    """Settings that replace a preset's value in every call (the `generator.*` fields of the same names)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int | None = None
    width: int | None = None
    height: int | None = None
    true_cfg_scale: float | None = None
    guidance_scale: float | None = None
    negative_prompt: str | None = None
    prompt_suffix: str | None = None

    @classmethod
    def from_config(cls, config: Any) -> Overrides:
        return cls(**{name: getattr(config, name) for name in cls.model_fields})


REQUEST_FIELDS = ("steps", "width", "height", "true_cfg_scale", "guidance_scale", "negative_prompt")
# How our names reach each loader's call; HunyuanImage-3.0's generate_image takes "HxW" as image_size.
_DIFFUSERS_NAMES = {"steps": "num_inference_steps"}
_TRANSFORMERS_NAMES = {"steps": "diff_infer_steps", "guidance_scale": "diff_guidance_scale"}
_TRANSFORMERS_LACKS = ("true_cfg_scale", "negative_prompt")


def call_arguments(call: CallPreset, loader: str, model: str, overrides: Overrides,
                   request: dict[str, Any] | None = None) -> tuple[dict[str, Any], str, dict[str, str]]:
    """The keyword arguments of one call (besides prompt, image and seed), the prompt suffix, and where
    each argument came from: the preset, overridden by the configuration, overridden by the request
    (`request`: our field names, None meaning unset). Raises ConfigError for what the loader cannot take."""
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    layers = (("the preset", call.model_dump()), ("the configuration", overrides.model_dump()),
              ("the request", request or {}))
    for origin, layer in layers:
        for name in REQUEST_FIELDS:
            if layer.get(name) is not None:
                values[name], source[name] = layer[name], origin
    suffix = call.prompt_suffix if overrides.prompt_suffix is None else overrides.prompt_suffix
    names = _DIFFUSERS_NAMES
    if loader == "transformers":
        names = _TRANSFORMERS_NAMES
        for name in _TRANSFORMERS_LACKS:
            if name in values:
                raise ConfigError(f"{model} (HunyuanImage-3.0) takes no {name} (set by {source[name]})")
        if ("width" in values) != ("height" in values):
            raise ConfigError(f"{model} (HunyuanImage-3.0) takes width and height together (image_size HxW)")
        if "width" in values:
            values["image_size"] = f"{values.pop('height')}x{values.pop('width')}"
            source["image_size"] = source.pop("height")
            source.pop("width")
    arguments = {names.get(name, name): value for name, value in values.items()}
    sources = {names.get(name, name): origin for name, origin in source.items()}
    for name, value in call.extra.items():
        arguments[name], sources[name] = value, "the preset"
    return arguments, suffix, sources
