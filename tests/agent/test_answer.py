from gensearcher.agent.answer import validate_answer
from gensearcher.agent.registry import ImageRegistry, normalise_img_id
from gensearcher.tools import ImageHit


def registry_with(n: int) -> ImageRegistry:
    registry = ImageRegistry()
    for i in range(n):
        registry.register(ImageHit(local_path=f"/img/{i}.jpg", url=f"https://x/{i}.jpg", title=f"t{i}"))
    return registry


def test_ids_are_sequential_and_reused_by_any_key():
    registry = ImageRegistry()
    a = registry.register(ImageHit(local_path="/a.jpg", url="https://x/a", sha256="s1"))
    b = registry.register(ImageHit(local_path="/b.jpg"))
    again = registry.register(ImageHit(local_path="/other.jpg", sha256="s1"))  # same content, other file
    by_url = registry.register(ImageHit(local_path="/third.jpg", url="https://x/a"))
    assert (a.img_id, b.img_id, again.img_id, by_url.img_id) == ("IMG_001", "IMG_002", "IMG_001", "IMG_001")
    assert len(registry.all()) == 2


def test_id_normalisation():
    assert normalise_img_id("img_7") == "IMG_007"
    assert normalise_img_id(" IMG-012 ") == "IMG_012"
    assert normalise_img_id("IMG_1234") == "IMG_1234"
    assert normalise_img_id("picture") == "picture"


def test_valid_answer_is_sorted_deduplicated_and_enriched():
    answer = validate_answer({"gen_prompt": " p ", "reference_images": [
        {"img_id": "IMG_003", "note": "c"}, {"img_id": "IMG_001"}, {"img_id": "IMG_003", "note": "again"}]},
        registry_with(3), max_refs=5)
    assert [r.img_id for r in answer.reference_images] == ["IMG_001", "IMG_003"]
    assert answer.reference_images[1].note == "c" and answer.reference_images[0].url == "https://x/0.jpg"
    assert answer.gen_prompt == "p" and answer.reordered and answer.duplicates_removed == 1


def test_ids_past_999_sort_numerically():
    registry = registry_with(1000)
    answer = validate_answer({"gen_prompt": "p", "reference_images": ["IMG_1000", "IMG_999"]}, registry, max_refs=5)
    assert [r.img_id for r in answer.reference_images] == ["IMG_999", "IMG_1000"]


def test_problems_are_listed_together():
    problems = validate_answer({"gen_prompt": "", "reference_images": [{"img_id": "IMG_009"}, {"x": 1}]},
                               registry_with(1), max_refs=5)
    assert any("gen_prompt" in p for p in problems)
    assert any("IMG_009" in p and "IMG_001" in p for p in problems)
    assert any('"img_id" string' in p for p in problems)


def test_reference_list_must_be_a_list():
    assert validate_answer({"gen_prompt": "p", "reference_images": "IMG_001"}, registry_with(1), max_refs=5)


def test_missing_reference_list_means_text_only():
    answer = validate_answer({"gen_prompt": "p"}, registry_with(0), max_refs=0)
    assert answer.reference_images == []


def test_hostile_ids_are_unknown_and_echoed_short():
    registry = registry_with(2)
    for hostile in ("IMG_" + "7" * 4300, "IMG_" + "0" * 50_000 + "1", "IMG_١٢"):
        assert normalise_img_id(hostile) == hostile.strip()  # no int() of thousands of digits, no Unicode digits
    problems = validate_answer({"gen_prompt": "x", "reference_images": ["IMG_" + "7" * 4300] + [7] * 1000},
                               registry, max_refs=5)
    text = "; ".join(problems)
    assert "IMG_" + "7" * 20 + "... (4304 characters)" in text and len(text) < 400
    assert text.count("each reference image must be an object") == 1
