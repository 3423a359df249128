"""The OpenAI, Gemini and Seedream backends against local servers speaking their wire formats."""

import pytest

from gensearcher.config import load_settings
from gensearcher.errors import GenerationError
from gensearcher.generate import GenerationRequest, build_generator
from gensearcher.testing.image_apis import KEY, ImageApis
from tests.conftest import make_image


@pytest.fixture(scope="module")
def apis():
    with ImageApis() as server:
        yield server


def generator_for(apis, backend, base, key=KEY, **extra):
    settings = load_settings({"generator": {"backend": backend, "api_key": key, "api_base_url": apis.url + base,
                                            "max_retries": 2, **extra}})
    return build_generator(settings)


CASES = [("openai", "/v1"), ("gemini", "/v1beta"), ("seedream", "/api/v3")]


@pytest.mark.parametrize("backend, base", CASES)
async def test_text_and_reference_requests(apis, tmp_path, backend, base):
    refs = [str(make_image(tmp_path / f"r{i}.png")) for i in range(2)]
    generator = generator_for(apis, backend, base)
    try:
        text = await generator.generate(GenerationRequest(prompt="a tower", width=64, height=48))
        edit = await generator.generate(GenerationRequest(prompt="the cup", reference_images=refs))
    finally:
        await generator.aclose()
    assert text.backend == backend and text.image_png.startswith(b"\x89PNG") and edit.used_images == refs
    kind, body = apis.requests[-1]
    if backend == "openai":
        assert (text.width, text.height) == (64, 48) and kind == "openai.edits" and body["images"] == 2
        assert body["model"] == "gpt-image-1" and body["n"] == "1" and body["size"] == "1024x1024"
        generations = [b for k, b in apis.requests if k == "openai.generations" and b["prompt"] == "a tower"][-1]
        assert generations["moderation"] == "low" and generations["output_format"] == "png"
        assert text.parameters == {"model": "gpt-image-1", "n": 1, "size": "64x48", "output_format": "png",
                                   "moderation": "low"}
    elif backend == "gemini":
        parts = body["contents"][0]["parts"]
        assert body["version"] == "v1beta" and body["model"] == "gemini-3-pro-image-preview:generateContent"
        assert parts[0] == {"text": "the cup"} and parts[1]["inlineData"]["mimeType"] == "image/png" and len(parts) == 3
    else:
        assert (text.width, text.height) == (64, 48) and body["response_format"] == "b64_json"
        assert body["image"][0].startswith("data:image/png;base64,") and body["watermark"] is False
        assert body["size"] == "2K" and body["sequential_image_generation"] == "disabled"
        assert body["model"] == "doubao-seedream-4-5-251128"
        assert text.source_format == "jpeg" and edit.parameters["size"] == "2K"  # Ark sends JPEG; kept as PNG


@pytest.mark.parametrize("backend, base", CASES)
async def test_rate_limits_are_retried_and_bad_keys_explained(apis, backend, base):
    generator = generator_for(apis, backend, base)
    try:
        result = await generator.generate(GenerationRequest(prompt="ratelimit"))
    finally:
        await generator.aclose()
    assert result.image_png
    bad = generator_for(apis, backend, base, key="wrong-key")
    try:
        with pytest.raises(GenerationError) as info:
            await bad.generate(GenerationRequest(prompt="x"))
    finally:
        await bad.aclose()
    assert "wrong-key" not in str(info.value) and ("401" in str(info.value) or "400" in str(info.value))


async def test_vendor_errors_are_clear(apis):
    for backend, base, prompt, message in (("openai", "/v1", "moderate", "moderation_blocked"),
                                           ("seedream", "/api/v3", "moderate", "OutputImageSensitiveContentDetected"),
                                           ("gemini", "/v1beta", "blocked", "IMAGE_SAFETY"),
                                           ("openai", "/v1", "boom", "HTTP 500")):
        generator = generator_for(apis, backend, base, max_retries=0)
        try:
            with pytest.raises(GenerationError, match=message):
                await generator.generate(GenerationRequest(prompt=prompt))
        finally:
            await generator.aclose()


async def test_reference_cap_per_backend(apis, tmp_path):
    refs = [str(make_image(tmp_path / f"c{i}.png")) for i in range(6)]
    generator = generator_for(apis, "seedream", "/api/v3", max_references=4)
    try:
        result = await generator.generate(GenerationRequest(prompt="x", reference_images=refs))
    finally:
        await generator.aclose()
    assert len(result.used_images) == 4 and [d.index for d in result.dropped_references] == [4, 5]


async def test_a_vendor_jpeg_is_saved_as_a_real_png_and_recorded(apis, tmp_path):
    from PIL import Image

    generator = generator_for(apis, "gemini", "/v1beta")
    try:
        result = await generator.generate(GenerationRequest(prompt="jpeg"))
    finally:
        await generator.aclose()
    path = result.save(tmp_path / "out.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (48, 64)
    assert result.source_format == "jpeg" and (result.width, result.height) == (48, 64)


async def test_gemini_part_that_is_not_an_image_is_a_clear_error(apis):
    generator = generator_for(apis, "gemini", "/v1beta", max_retries=0)
    try:
        with pytest.raises(GenerationError, match=r"Gemini \(an image part declared 'image/png'\) sent something that is not an image"):
            await generator.generate(GenerationRequest(prompt="notimage"))
    finally:
        await generator.aclose()


def test_config_shows_the_reference_vendor_defaults():
    for backend, model, size in (("openai", "gpt-image-1", "1024x1024"), ("gemini", "gemini-3-pro-image-preview", None),
                                 ("seedream", "doubao-seedream-4-5-251128", "2K")):
        shown = load_settings({"generator": {"backend": backend}}).masked()["generator"]
        assert (shown["effective_api_model"], shown["effective_api_size"]) == (model, size)
    shown = load_settings({"generator": {"backend": "seedream", "api_model": "m", "api_size": "4K"}}).masked()["generator"]
    assert (shown["effective_api_model"], shown["effective_api_size"]) == ("m", "4K")
    assert load_settings({}).masked()["generator"]["effective_api_model"] is None  # diffusers
