"""Synthetic run folders in the exact shape `gensearcher eval` writes, for the viewer's tests and benchmark.

Written through the real record types and writers (trajectories as `Trajectory`, rows through
`result_row`, `GenerationRow`, `JudgedRow`, the scores through `score_tables`), so the viewer is tested on
what the commands produce. Images are real PNGs at the size users have (1328 px by default); with
`distinct_images=False` every item points at the same few files, so a 50,000-item run stays small on disk.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from gensearcher._files import write_atomic, write_json_atomic

CATEGORIES = ["sports", "film", "history", "anime", "science"]
DIFFICULTIES = ["easy", "medium", "hard"]
CYCLE = 3 * 5 * 7  # shared image x category x termination: item i looks like item i % CYCLE


def picture(path: Path, size: int, seed: int) -> Path:
    """A real PNG of `size` x `size` px with content that differs by seed (a few shapes on a colour)."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), tuple(rng.randrange(40, 220) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = rng.randrange(size), rng.randrange(size)
        draw.ellipse((x - size // 8, y - size // 8, x + size // 8, y + size // 8),
                     fill=tuple(rng.randrange(256) for _ in range(3)))
    draw.text((size // 20, size // 20), f"#{seed}", fill=(255, 255, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", compress_level=1)
    return path


def _trajectory(item_id: int, prompt: str, meta: dict[str, Any], gt: str | None, refs: list[Path],
                termination: Any) -> Any:
    from gensearcher.agent.trajectory import Answer, Step, ToolCallRecord, Trajectory
    from gensearcher.data import Meta, ReferenceImage, SeenImage, Task
    from gensearcher.messages import ImageRef, Message
    from gensearcher.policy.base import TokenUsage

    images = [SeenImage(img_id=f"IMG_{n + 1:03d}", local_path=str(path), url=f"https://example.org/{n}.jpg",
                              title=f"picture {n + 1} for item {item_id}", sha256=hashlib.sha256(str(path).encode())
                              .hexdigest()) for n, path in enumerate(refs)]
    usage = TokenUsage(prompt_tokens=900, completion_tokens=60)
    search = ToolCallRecord(name="search", arguments={"queries": [f"{prompt[:40]} facts"]},
                            result_text=f"1. A page about item {item_id}\n   The subject wears a teal kit.",
                            duration_s=0.4, cache_keys=["text:abc"])
    image_search = ToolCallRecord(name="image_search", arguments={"query": f"item {item_id} photo", "top_k": 2},
                                  result_text="\n".join(f"{i.img_id}: {i.title}" for i in images),
                                  duration_s=1.2, image_ids=[i.img_id for i in images], cache_keys=["image:1"])
    steps = [Step(round=1, response=f"<think>Who is in item {item_id}?</think>\n<tool_call>...</tool_call>",
                  usage=usage, latency_s=0.8, action="tool_call", tool_call=search, finish_reason="stop"),
             Step(round=2, response="<think>Now pictures.</think>\n<tool_call>...</tool_call>", usage=usage,
                  latency_s=0.9, action="tool_call", tool_call=image_search, finish_reason="stop")]
    answer = None
    if termination == "answer":
        steps.append(Step(round=3, response="<think>Enough.</think>\n<answer>...</answer>", usage=usage,
                          latency_s=1.1, action="answer", finish_reason="stop"))
        answer = Answer(gen_prompt=f"A photo of the subject of item {item_id} as in IMG_001, in the style of IMG_002.",
                        reference_images=[ReferenceImage(img_id=i.img_id, note=f"take the look of {i.img_id}",
                                                         local_path=i.local_path, url=i.url, title=i.title)
                                          for i in images])
    messages = [Message(role="system", text="(system prompt)"), Message(role="user", text=prompt),
                Message(role="user", text="images", images=[ImageRef(path=str(p), sha256="0" * 64, width=1328,
                                                                       height=1328) for p in refs])]
    return Trajectory(task=Task(id=item_id, prompt=prompt, meta=Meta(**meta), gt_image=gt), messages=messages, steps=steps,
                      images=images, answer=answer, termination=termination, rounds=len(steps),
                      usage=TokenUsage(prompt_tokens=900 * len(steps), completion_tokens=60 * len(steps)),
                      started_at="2026-12-01T09:00:00Z", duration_s=4.2, policy_s=2.8, tools_s=1.6)


def write_sample_run(root: Path, count: int, *, gt_dir: Path, image_px: int = 1328, seed: int = 0,
                     distinct_images: bool = True, judged: bool = True) -> Path:
    """An eval folder of `count` items under `root`: research/, images/, results_eval.json, scores.json.

    Ground-truth images go to `gt_dir` (as a benchmark's do, outside the run). Scores depend on `seed`,
    so two runs with different seeds make a comparison with flipped items.
    """
    from gensearcher.agent.batch import result_row, trajectory_filename
    from gensearcher.agent.trajectory import save_trajectory
    from gensearcher.data import GenerationRow, JudgedRow
    from gensearcher.evaluate.pipeline import score_tables

    rng = random.Random(seed)
    shared = 3 if not distinct_images else 0
    research_rows, generation_rows, judged_rows = [], [], []
    templates: dict[int, tuple[int, dict[str, Any], str]] = {}
    for item_id in range(count):
        key = item_id if distinct_images else item_id % shared
        meta = {"category": CATEGORIES[item_id % len(CATEGORIES)], "difficulty": DIFFICULTIES[item_id % 3]}
        gt = gt_dir / f"{key}.png"
        if not gt.exists():
            picture(gt, image_px, 1000 + key)
        refs = [root / "research" / "images" / "policy" / f"{key}-{n}.png" for n in range(2)]
        for n, path in enumerate(refs):
            if not path.exists():
                picture(path, 400, 2000 + 10 * key + n)
        termination = "no_answer" if item_id % 7 == 5 else "answer"
        prompt = f"Item {item_id}: a poster of the {meta['category']} subject number {item_id}"
        relative = f"trajectories/{trajectory_filename(item_id)}"
        if distinct_images or item_id < CYCLE:
            trajectory = _trajectory(item_id, prompt, meta, str(gt), refs, termination)
            save_trajectory(trajectory, root / "research" / relative, fsync=False)
            row = result_row(trajectory, relative).to_json()
            templates[item_id % CYCLE] = (item_id, row, trajectory.task.model_dump_json())
        else:  # a large run: the same item written again under another id (the writers cost minutes at 50,000)
            row, _ = _renumbered(root / "research", templates[item_id % CYCLE],
                                      item_id, relative)
        research_rows.append(row)
        output = root / "images" / "images" / f"{key}-s{seed}.png"
        success = termination == "answer"
        if success and not output.exists():
            picture(output, image_px, 3000 + key + 100 * seed)
        generation = GenerationRow.model_validate({
            "id": item_id, "prompt": prompt, "gen_prompt": row["gen_prompt"], "meta": meta, "gt_image": str(gt),
            "used_prompt": row["gen_prompt"], "used_images": [str(p) for p in refs] if success else [],
            "output_path": str(output) if success else None, "success": success,
            "error": None if success else "the research ended without an answer", "backend": "diffusers",
            "model": "tiny", "seconds": 2.5})
        generation_rows.append(generation.to_json())
        if judged:
            value = round(rng.random(), 2)
            scores = {"rationale": f"Item {item_id}: the subject matches; the kit colour is {'right' if value > .5 else 'wrong'}.",
                      "faithfulness": value, "visual_correctness": value, "text_accuracy": 0.5, "aesthetics": 0.5,
                      "text_accuracy_na": False, "overall": value} if success else None
            judged_rows.append(JudgedRow.model_validate({**generation.to_json(), "eval_success": success,
                                                         "scores": scores}).to_json())
    _write_lines(root / "research" / "results.json", research_rows)
    _write_lines(root / "images" / "results.json", generation_rows)
    if judged:
        _write_lines(root / "results_eval.json", judged_rows)
        if count <= 500:  # the bootstrap intervals of a large run take longer than all the rest
            write_json_atomic(root / "scores.json",
                              score_tables("knowgen", [JudgedRow.model_validate(r) for r in judged_rows]))
        write_json_atomic(root / "costs.json", {"judge": {"calls": len(judged_rows), "seconds": 1.0}})
    return root


def _renumbered(research: Path, template: tuple[int, dict[str, Any], str], item_id: int,
                relative: str) -> tuple[dict[str, Any], str]:
    """A copy of the template item's trajectory file and row under `item_id` (same content, other id)."""
    old_id, old_row, _ = template

    def renumber(text: str) -> str:
        return (text.replace(f"item {old_id}", f"item {item_id}").replace(f"Item {old_id}:", f"Item {item_id}:")
                .replace(f"number {old_id}", f"number {item_id}"))

    stored = json.loads(renumber((research / old_row["trajectory"]).read_text(encoding="utf-8")))
    stored["task"]["id"] = item_id
    text = json.dumps(stored, ensure_ascii=False)
    write_atomic(research / relative, text.encode("utf-8"), fsync=False)
    row = json.loads(renumber(json.dumps(old_row, ensure_ascii=False)))
    row.update(id=item_id, trajectory=relative)
    return row, text


def _write_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    from gensearcher.data import json_array

    write_atomic(path, json_array([json.dumps(r, ensure_ascii=False) for r in rows]), fsync=False)
