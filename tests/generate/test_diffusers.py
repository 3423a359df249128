"""The diffusers backend with tiny random-weight QwenImage and QwenImageEditPlus pipelines."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from gensearcher.config import load_settings
from gensearcher.errors import GenerationError
from gensearcher.generate import GenerationRequest, build_generator
from tests.conftest import make_image

SMALL = {"edit_condition_pixels": 64 * 64, "edit_vae_pixels": 64 * 64}


@pytest.fixture
async def generator(tiny_text_model, tiny_edit_model):
    settings = load_settings({"generator": {"backend": "diffusers", "model": str(tiny_text_model),
                                            "edit_model": str(tiny_edit_model), **SMALL}})
    generator = build_generator(settings)
    yield generator
    await generator.aclose()


async def test_text_only_uses_the_text_model_and_its_defaults(generator, tiny_text_model):
    result = await generator.generate(GenerationRequest(prompt="a red bicycle", width=64, height=64, steps=2))
    image = Image.open(io.BytesIO(result.image_png))
    assert image.size == (64, 64) and image.mode == "RGB"
    assert result.model == str(tiny_text_model) and result.used_images == []
    assert result.parameters == {"prompt": "a red bicycle, Ultra HD, 4K, cinematic composition.",
                                 "num_inference_steps": 2, "width": 64, "height": 64, "true_cfg_scale": 4.0,
                                 "negative_prompt": " ", "generator": {"device": "cpu", "manual_seed": 0}}
    assert result.pipeline_settings == {"pipeline": "QwenImagePipeline", "preset": "qwen-image"}
    assert GenerationRequest(prompt="x").resolved(with_references=False)["steps"] == 50


async def test_references_use_the_edit_model_and_extra_ones_are_dropped(generator, tiny_edit_model, tmp_path):
    refs = [str(make_image(tmp_path / f"ref{i}.png", color=(60 * i, 10, 10))) for i in range(5)]
    result = await generator.generate(GenerationRequest(prompt="the cyclist", reference_images=refs,
                                                        width=64, height=64, steps=2))
    assert result.model == str(tiny_edit_model) and result.used_images == refs[:3]
    assert [d.index for d in result.dropped_references] == [3, 4]
    assert "at most 3" in result.dropped_references[0].reason
    assert result.parameters == {"prompt": "the cyclist", "num_inference_steps": 2, "width": 64, "height": 64,
                                 "true_cfg_scale": 4.0, "guidance_scale": 1.0, "negative_prompt": " ",
                                 "image": refs[:3], "generator": {"device": "cpu", "manual_seed": 0}}
    assert result.pipeline_settings == {"pipeline": "QwenImageEditPlusPipeline", "preset": "qwen-image-edit-plus",
                                        "condition_image_size": 4096, "vae_image_size": 4096}
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus as module

    assert (module.CONDITION_IMAGE_SIZE, module.VAE_IMAGE_SIZE) == (384 * 384, 1024 * 1024)  # only during the call
    assert GenerationRequest(prompt="x").resolved(with_references=True)["steps"] == 40


async def test_same_seed_same_image(generator):
    request = GenerationRequest(prompt="a tower", width=64, height=64, steps=2, seed=7)
    first, second = await generator.generate(request), await generator.generate(request)
    other = await generator.generate(request.model_copy(update={"seed": 8}))
    assert first.image_png == second.image_png and other.image_png != first.image_png


async def test_missing_reference_is_an_error(generator, tmp_path):
    with pytest.raises(GenerationError, match="reference image not found"):
        await generator.generate(GenerationRequest(prompt="x", reference_images=[str(tmp_path / "gone.png")]))


def test_unknown_model_is_a_config_error(tmp_path):
    from gensearcher.errors import ConfigError

    settings = load_settings({"generator": {"model": str(tmp_path / "nothing"), "edit_model": None}})
    with pytest.raises(ConfigError, match="cannot load the diffusers model"):
        build_generator(settings)  # at startup: the pipeline class is read before any work
