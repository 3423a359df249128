"""Model presets: each family's tiny pipeline (random weights, built from configs) gets the reference
system's arguments, makes an image, and the result records exactly what the pipeline was called with."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from PIL import Image

from gensearcher.config import load_settings
from gensearcher.errors import ConfigError, GenerationError
from gensearcher.generate import GenerationRequest, build_generator
from gensearcher.generate.presets import PRESETS, Overrides, call_arguments, choose_preset
from gensearcher.testing import tiny_models
from tests.conftest import make_image

BUILDERS = {"flux": tiny_models.save_tiny_flux, "sd3": tiny_models.save_tiny_sd3,
            "z_image": tiny_models.save_tiny_z_image, "lumina2": tiny_models.save_tiny_lumina2,
            "flux2_klein": tiny_models.save_tiny_flux2_klein, "longcat": tiny_models.save_tiny_longcat_image,
            "longcat_edit": lambda folder: tiny_models.save_tiny_longcat_image(folder, edit=True),
            "image3": tiny_models.save_tiny_image3}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Builds a family's tiny checkpoint once per session; `tiny(kind, as_name)` links it under a model-like
    name (the presets pick variants such as Krea or Turbo by name, as the reference system does)."""
    root, built = tmp_path_factory.mktemp("tiny-families"), {}

    def get(kind, as_name=None):
        if kind not in built:
            built[kind] = BUILDERS[kind](root / kind)
        if as_name is None:
            return built[kind]
        link = root / as_name
        if not link.exists():
            link.symlink_to(built[kind], target_is_directory=True)
        return link
    return get


class Spy:
    """Stands in front of a loaded pipeline and keeps the keyword arguments each call really received."""

    def __init__(self, pipeline):
        self.pipeline, self.calls = pipeline, []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return self.pipeline(**kwargs)

    def __getattr__(self, name):
        return getattr(self.pipeline, name)


def as_recorded(kwargs, paths):
    """A pipeline call's arguments in the form the result records them (images as paths, generator as seed)."""
    out = {}
    for key, value in kwargs.items():
        if key == "generator":
            out[key] = {"device": "cpu", "manual_seed": value.initial_seed()}
        elif key == "image":
            out[key] = paths[: len(value)] if isinstance(value, list) else paths[0]
            assert all(isinstance(v, Image.Image) for v in (value if isinstance(value, list) else [value]))
        else:
            out[key] = value
    return out


async def generate_spied(settings, request):
    generator = build_generator(load_settings(settings))
    role = "edit" if request.reference_images else "text"
    spy = Spy(generator.pipelines._pipeline(role))
    generator.pipelines._pipelines[role] = spy
    try:
        result = await generator.generate(request)
    finally:
        await generator.aclose()
    assert len(spy.calls) == 1
    assert result.parameters == as_recorded(spy.calls[0], result.used_images)
    with Image.open(io.BytesIO(result.image_png)) as image:
        assert image.format == "PNG" and image.size == (result.width, result.height)
    return result, spy.calls[0]


# kind, model name, family, request fields (size and steps kept small), the preset arguments that must arrive
CASES = [
    ("flux", "FLUX.1-dev", "flux.1-dev", {"steps": 2}, {"guidance_scale": 3.5}),
    ("flux", "FLUX.1-Krea-dev", "flux.1-krea", {"steps": 2}, {"guidance_scale": 4.5}),
    ("flux2_klein", "FLUX.2-klein-4B", "flux.2-klein", {}, {"guidance_scale": 1.0, "num_inference_steps": 4}),
    ("sd3", "stable-diffusion-3.5-large", "sd-3.5-large", {"steps": 2}, {"guidance_scale": 3.5}),
    ("sd3", "stable-diffusion-3.5-medium", "sd-3.5-medium", {"steps": 2}, {"guidance_scale": 4.5}),
    ("z_image", "Z-Image", "z-image", {"steps": 2}, {"guidance_scale": 4.0}),
    ("z_image", "Z-Image-Turbo", "z-image-turbo", {}, {"guidance_scale": 0.0, "num_inference_steps": 9}),
    ("lumina2", "Lumina-Image-2.0", "lumina-image-2.0", {"steps": 2}, {"guidance_scale": 4.0, "cfg_trunc_ratio": 0.25}),
    ("longcat", "LongCat-Image", "longcat-image", {"steps": 2},
     {"guidance_scale": 4.0, "enable_cfg_renorm": True, "enable_prompt_rewrite": True}),
]


@pytest.mark.parametrize("kind, name, family, fields, expected", CASES, ids=[case[2] for case in CASES])
async def test_each_family_gets_its_preset_and_records_the_call(tiny, kind, name, family, fields, expected):
    model = tiny(kind, name)
    result, call = await generate_spied({"generator": {"model": str(model), "edit_model": ""}},
                                        GenerationRequest(prompt="a red tower", width=32, height=32, seed=3, **fields))
    assert result.pipeline_settings["preset"] == family
    assert {key: call[key] for key in expected} == expected
    assert (call["width"], call["height"], result.width, result.height) == (32, 32, 32, 32)
    assert call["generator"].initial_seed() == 3 and call["prompt"] == "a red tower"
    assert "true_cfg_scale" not in call and "negative_prompt" not in call  # FLUX keeps true CFG off


async def test_longcat_edits_with_the_first_reference_only(tiny, tmp_path):
    refs = [str(make_image(tmp_path / f"r{i}.png", size=(40, 32), color=(50 * i, 9, 9))) for i in range(3)]
    result, call = await generate_spied({"generator": {"model": str(tiny("flux")), "edit_model": str(tiny("longcat_edit"))}},
                                        GenerationRequest(prompt="the tower", reference_images=refs, steps=1))
    assert isinstance(call["image"], Image.Image) and result.parameters["image"] == refs[0]
    assert call["guidance_scale"] == 4.5 and result.used_images == refs[:1]
    assert [d.index for d in result.dropped_references] == [1, 2]


async def test_a_generic_pipeline_is_called_with_its_own_signature(tiny, tmp_path):
    folder = tmp_path / "flux-img2img"
    shutil.copytree(tiny("flux"), folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "FluxImg2ImgPipeline"}))
    ref = str(make_image(tmp_path / "ref.png", size=(32, 32)))
    result, call = await generate_spied({"generator": {"model": str(tiny("flux")), "edit_model": str(folder)}},
                                        GenerationRequest(prompt="p", reference_images=[ref], steps=2, width=32, height=32))
    assert result.pipeline_settings == {"pipeline": "FluxImg2ImgPipeline", "preset": "generic"}
    assert set(call) == {"prompt", "image", "num_inference_steps", "width", "height", "generator"}


async def test_hunyuan_image3_runs_through_transformers_remote_code(tiny):
    model = str(tiny("image3"))
    with pytest.raises(ConfigError, match="TRUST_REMOTE_CODE"):
        build_generator(load_settings({"generator": {"model": model, "edit_model": ""}}))
    generator = build_generator(load_settings({"generator": {"model": model, "edit_model": "", "trust_remote_code": True,
                                                             "steps": 5}}))
    try:
        result = await generator.generate(GenerationRequest(prompt="a tower", width=48, height=32, seed=4))
        with pytest.raises(GenerationError, match="takes no negative_prompt"):
            await generator.generate(GenerationRequest(prompt="x", negative_prompt="blurry"))
        calls = generator.pipelines._pipelines["text"].calls
    finally:
        await generator.aclose()
    assert result.parameters == {"prompt": "a tower", "image_size": "32x48", "diff_infer_steps": 5, "seed": 4}
    assert calls == [result.parameters] and (result.width, result.height) == (48, 32)
    assert result.pipeline_settings["preset"] == "hunyuanimage-3.0"


def test_qwen_image_text_preset_is_the_reference_baseline(tiny_text_model):
    preset, role = choose_preset("Qwen/Qwen-Image", "QwenImagePipeline")
    arguments, suffix, _ = call_arguments(preset.text, "diffusers", "Qwen/Qwen-Image", Overrides())
    assert role == "text" and suffix == ", Ultra HD, 4K, cinematic composition."
    assert arguments == {"num_inference_steps": 50, "width": 1664, "height": 928, "true_cfg_scale": 4.0,
                         "negative_prompt": " "}
    edit, role = choose_preset("Qwen/Qwen-Image-Edit-2509", "QwenImageEditPlusPipeline")
    assert role == "edit" and edit.max_references == 3 and edit.references == "list"
    assert call_arguments(edit.edit, "diffusers", "x", Overrides())[0] == {
        "num_inference_steps": 40, "true_cfg_scale": 4.0, "guidance_scale": 1.0, "negative_prompt": " "}
    assert len({preset.family for preset in PRESETS}) == len(PRESETS)


async def test_settings_override_the_preset(tiny, tiny_text_model):
    _, call = await generate_spied(
        {"generator": {"model": str(tiny("flux", "FLUX.1-dev")), "edit_model": "", "guidance_scale": 2.5,
                       "true_cfg_scale": 1.5, "negative_prompt": "blurry", "prompt_suffix": ", matte"}},
        GenerationRequest(prompt="p", steps=1, width=32, height=32))
    assert (call["guidance_scale"], call["true_cfg_scale"], call["negative_prompt"], call["prompt"]) == (2.5, 1.5, "blurry", "p, matte")
    _, call = await generate_spied({"generator": {"model": str(tiny_text_model), "edit_model": "", "prompt_suffix": ""}},
                                   GenerationRequest(prompt="p", steps=1, width=32, height=32))
    assert call["prompt"] == "p"


def test_a_parameter_the_pipeline_does_not_take_stops_the_start(tiny):
    cases = [({"model": str(tiny("z_image")), "true_cfg_scale": 2.0}, r"z_image \(ZImagePipeline\) does not take 'true_cfg_scale' \(set by the configuration"),
             ({"model": str(tiny("flux2_klein")), "negative_prompt": "x"}, r"\(Flux2KleinPipeline\) does not take 'negative_prompt'"),
             ({"model": str(tiny("flux")), "edit_model": str(tiny("sd3"))}, "is a text-to-image pipeline"),
             ({"model": str(tiny("flux")), "edit_model": str(tiny("longcat_edit")), "max_references": 3}, "takes one reference"),
             ({"model": str(tiny("flux")), "edit_model": str(tiny("longcat_edit")), "edit_vae_pixels": 4096}, "apply to QwenImageEditPlusPipeline")]
    for generator, message in cases:
        with pytest.raises(ConfigError, match=message):
            build_generator(load_settings({"generator": {"edit_model": "", **generator}}))


async def test_a_request_parameter_the_pipeline_does_not_take_fails_the_item(tiny):
    generator = build_generator(load_settings({"generator": {"model": str(tiny("z_image")), "edit_model": ""}}))
    try:
        with pytest.raises(GenerationError, match=r"does not take 'true_cfg_scale' \(set by the request"):
            await generator.generate(GenerationRequest(prompt="p", true_cfg_scale=3.0, width=32, height=32, steps=1))
    finally:
        await generator.aclose()
