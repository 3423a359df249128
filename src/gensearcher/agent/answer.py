"""Validating the final answer against the images this trajectory has actually seen."""

from __future__ import annotations

from typing import Any

from gensearcher.agent.registry import ImageRegistry, normalise_img_id
from gensearcher.agent.trajectory import Answer
from gensearcher.data.records import ReferenceImage


def validate_answer(payload: dict[str, Any], registry: ImageRegistry, *, max_refs: int) -> Answer | list[str]:
    """Return the enriched answer, or the list of problems to show the model.

    References are de-duplicated and sorted by id (the order the prompt's ordinals refer to). An answer
    without references is valid: the generator then works from the text alone.
    """
    problems: list[str] = []
    gen_prompt = payload.get("gen_prompt")
    if not isinstance(gen_prompt, str) or not gen_prompt.strip():
        problems.append('"gen_prompt" must be a non-empty string')
    raw_refs = payload.get("reference_images", [])
    if raw_refs is None:
        raw_refs = []
    if not isinstance(raw_refs, list):
        return [*problems, '"reference_images" must be a list of {"img_id": ..., "note": ...} objects']

    refs: dict[str, ReferenceImage] = {}
    order: list[str] = []
    unknown: list[str] = []
    for item in raw_refs:
        if isinstance(item, str):
            item = {"img_id": item}
        if not isinstance(item, dict) or not isinstance(item.get("img_id"), str):
            shape = 'each reference image must be an object with an "img_id" string'
            if shape not in problems:
                problems.append(shape)
            continue
        image = registry.get(item["img_id"])
        if image is None:
            unknown.append(item["img_id"])
            continue
        order.append(image.img_id)
        if image.img_id not in refs:
            note = item.get("note")
            refs[image.img_id] = ReferenceImage(**image.model_dump(), note=note if isinstance(note, str) else "")
    if unknown:
        known = ", ".join(image.img_id for image in registry.all()) or "none yet"
        problems.append(f"unknown image id(s) {_listed(unknown)}; the ids you have seen are: {known}")
    if len(refs) > max_refs:
        problems.append(f"{len(refs)} reference images were cited; choose at most {max_refs}")
    if problems:
        return problems
    ids = sorted(refs, key=_id_number)
    first_seen = list(dict.fromkeys(order))
    return Answer(
        gen_prompt=str(gen_prompt).strip(),
        reference_images=[refs[img_id] for img_id in ids],
        reordered=first_seen != ids,
        duplicates_removed=len(order) - len(refs),
    )


def _id_number(img_id: str) -> int:
    """The number of a registry id (IMG_007 -> 7); registry ids are ours, so this cannot fail on them."""
    return int(normalise_img_id(img_id)[4:])


def _listed(ids: list[str], *, most: int = 8, width: int = 24) -> str:
    """Ids the model wrote, as they go back into an observation: a few, each cut short."""
    shown = [i if len(i) <= width else f"{i[:width]}... ({len(i)} characters)" for i in ids[:most]]
    more = f" and {len(ids) - most} more" if len(ids) > most else ""
    return ", ".join(shown) + more
