"""Our SFT dataset: typed rows on disk, built from our own trajectories (or imported, see `sharegpt.py`).

A dataset is a folder:

    rows.jsonl      one `SFTRow` per line: the conversation exactly as the policy saw it
    images/         every image file the rows show, named by its sha256 (the exact, already capped pixels)
    manifest.json   `SFTManifest`: counts, sources, the pixel cap, and every row left out with its reason

Rows keep the agent's messages unchanged: system prompt, task, each assistant turn, each tool response as
a user turn with its images first, and (in the final round) two user turns in a row. The trainer renders
them with the same function the in-process policy uses (`policy.transformers_local.encode_messages`),
so training is token for token what inference shows. LLaMA-Factory's sharegpt needs strict alternation;
`sharegpt.export_llamafactory` merges consecutive user turns only there.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from gensearcher._files import write_atomic
from gensearcher.data.io import read_records
from gensearcher.data.records import JudgedRow
from gensearcher.errors import UserError
from gensearcher.images import sha256_file
from gensearcher.messages import ImageRef, Message

ROWS_FILE = "rows.jsonl"
MANIFEST_FILE = "manifest.json"
IMAGE_DIR = "images"
FORMAT: Literal["gensearcher-sft"] = "gensearcher-sft"

# Chat control tokens of the Qwen family. Text holding one would be parsed as that token by the tokenizer,
# which breaks the turn structure (and the assistant mask), so such rows are left out.
CONTROL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>")


class SFTRow(BaseModel):
    """One training conversation. Image paths are relative to the dataset folder on disk, absolute in memory."""

    id: str = Field(..., description="Unique within the dataset: '<source index>' or '<run>/<task id>'.")
    messages: list[Message] = Field(..., description="The conversation as the policy saw it; assistant turns are trained.")
    source: Literal["reference", "trajectory"] = Field(..., description="Imported sharegpt row, or our trajectory.")
    origin: str = Field(..., description="The file (and index) or the trajectory file the row came from.")
    task_id: str | None = Field(None, description="The task's id in its benchmark or prompt file, when known.")
    prompt: str | None = Field(None, description="The task prompt (the first user turn).")
    score: float | None = Field(None, description="The judge's overall score of the row's answer, when judged.")

    @property
    def images(self) -> list[ImageRef]:
        return [image for message in self.messages for image in message.images]


class SkippedRow(BaseModel):
    """A row left out of the dataset, and why."""

    index: int | str = Field(..., description="Position in the input file, or the trajectory file name.")
    source: str = Field(..., description="The input file or run folder.")
    reason: str


class SFTManifest(BaseModel):
    """What a dataset folder holds and where it came from."""

    format: Literal["gensearcher-sft"] = FORMAT
    version: int = 1
    created_at: str = Field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat())
    rows: int = Field(0, description="Rows in rows.jsonl.")
    images: int = Field(0, description="Distinct image files in images/.")
    max_pixels: int | None = Field(None, description="Pixel cap the images were stored at (imports re-cap; runs keep theirs).")
    sources: list[str] = Field(default_factory=list, description="Input files or run folders.")
    skipped: list[SkippedRow] = Field(default_factory=list, description="Every row left out, with the reason.")


class ImageStore:
    """The dataset's content-addressed image folder."""

    def __init__(self, root: Path):
        self.root = root
        self.folder = root / IMAGE_DIR
        self._resolved = root.resolve()

    def add_exact(self, image: ImageRef) -> ImageRef:
        """Copy a policy image byte for byte, after checking it is still the file the policy saw."""
        source = Path(image.path)
        if not source.is_file():
            raise ValueError(f"image {source} is missing")
        if sha256_file(source) != image.sha256:
            raise ValueError(f"image {source.name} changed since the run (sha256 differs)")
        target = self.folder / f"{image.sha256}{source.suffix or '.jpg'}"
        if not target.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        return image.model_copy(update={"path": str(target.resolve())})

    def relative(self, image: ImageRef) -> ImageRef:
        path = Path(image.path)
        if not path.is_relative_to(self._resolved):  # stored paths are already resolved; others are checked
            path = path.resolve()
        return image.model_copy(update={"path": path.relative_to(self._resolved).as_posix()})


def check_control_tokens(messages: Iterable[Message]) -> None:
    """Raise ValueError when a message holds a chat control token as text."""
    for index, message in enumerate(messages):
        for token in CONTROL_TOKENS:
            if token in message.text:
                raise ValueError(f"message {index} holds the chat control token {token} as text")


def prepare_out(out: Path) -> ImageStore:
    """A new dataset folder: refuse to mix into an existing dataset."""
    if (out / ROWS_FILE).exists():
        raise UserError(f"{out / ROWS_FILE} exists: choose another --out (datasets are written once)")
    out.mkdir(parents=True, exist_ok=True)
    return ImageStore(out)


def write_dataset(store: ImageStore, rows: list[SFTRow], manifest: SFTManifest) -> SFTManifest:
    """Write rows.jsonl and manifest.json (atomically); image paths become relative to the folder."""
    lines = []
    for row in rows:
        messages = [m.model_copy(update={"images": [store.relative(i) for i in m.images]}) for m in row.messages]
        lines.append(row.model_copy(update={"messages": messages}).model_dump_json(exclude_none=True))
    manifest.rows = len(rows)
    manifest.images = len({image.sha256 for row in rows for image in row.images})
    write_atomic(store.root / ROWS_FILE, ("\n".join(lines) + "\n" if lines else "").encode("utf-8"))
    write_atomic(store.root / MANIFEST_FILE, manifest.model_dump_json(indent=2).encode("utf-8"))
    return manifest


def read_dataset(folder: Path) -> tuple[SFTManifest, list[SFTRow]]:
    """A dataset folder's manifest and rows, with absolute image paths. UserError names a bad line."""
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file() or not (folder / ROWS_FILE).is_file():
        raise UserError(f"{folder} is not an SFT dataset folder (no {MANIFEST_FILE} / {ROWS_FILE}); "
                        "make one with `gensearcher data import-sft` or `gensearcher data sft`")
    try:
        manifest = SFTManifest.model_validate_json(manifest_path.read_bytes())
    except ValidationError as exc:
        raise UserError(f"{manifest_path}: not an SFT manifest: {exc.errors()[0]['msg']}") from None
    rows = []
    root = folder.resolve()
    for number, line in enumerate((folder / ROWS_FILE).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = SFTRow.model_validate_json(line)
        except ValidationError as exc:
            raise UserError(f"{folder / ROWS_FILE}: line {number}: {exc.errors()[0]['msg']}") from None
        messages = [m.model_copy(update={"images": [i.model_copy(update={"path": str(root / i.path)}) for i in m.images]})
                    for m in row.messages]
        rows.append(row.model_copy(update={"messages": messages}))
    return manifest, rows


# --- our trajectories -> rows -------------------------------------------------------------------------------


def trajectory_files(run_dir: Path) -> list[Path]:
    files = sorted((run_dir / "trajectories").glob("*.json"))
    if (run_dir / "trajectory.json").is_file():
        files.append(run_dir / "trajectory.json")
    if not files:
        raise UserError(f"no trajectories in {run_dir} (expected trajectories/*.json or trajectory.json)")
    return files


def judged_scores(path: Path) -> dict[str, float | None]:
    """Overall score by id (as a string) from a results_eval.json; None where the judgement failed."""
    rows = read_records(path, JudgedRow, skip=lambda row: "summary_type" in row or bool(row.get("pending")))
    return {str(row.id): (row.scores.overall if row.scores is not None and row.eval_success else None) for row in rows}


def rows_from_runs(run_dirs: list[Path], store: ImageStore, *, judged: list[Path] | None = None,
                   min_score: float | None = None, keep_invalid_turns: bool = False) -> tuple[list[SFTRow], list[SkippedRow]]:
    """Training rows from research output folders: answer terminations only, optionally judged.

    `judged` is one results_eval.json for all runs or one per run (in order); ids join as strings. With
    `min_score` only rows judged at or above it are kept (rejection sampling). A run in which the model
    wrote an unusable turn (it got feedback and recovered) is left out unless `keep_invalid_turns`: every
    assistant turn is trained, so the mistake would be taught too.
    """
    if min_score is not None and not judged:
        raise UserError("--min-score needs --judged results_eval.json (the judge's scores)")
    if judged and len(judged) not in (1, len(run_dirs)):
        raise UserError("give one --judged file for all runs, or one per --from run in the same order")
    scores = [judged_scores(path) for path in judged] if judged else []
    rows: list[SFTRow] = []
    skipped: list[SkippedRow] = []
    seen_tasks: dict[str, str] = {}
    for run_index, run_dir in enumerate(run_dirs):
        table = scores[run_index if len(scores) > 1 else 0] if scores else None
        for path in trajectory_files(run_dir):
            where = SkippedRow(index=path.name, source=str(run_dir), reason="")
            try:
                row = _row_from_trajectory(path, run_index, store, keep_invalid_turns)
            except (ValueError, ValidationError, OSError) as exc:
                skipped.append(where.model_copy(update={"reason": _reason(exc)}))
                continue
            if row is None:
                continue
            if table is not None:
                key = row.task_id or ""
                if len(scores) == 1 and len(run_dirs) > 1 and key in seen_tasks and seen_tasks[key] != str(run_dir):
                    raise UserError(f"id {key!r} is in two runs ({seen_tasks[key]}, {run_dir}): give one --judged per --from")
                seen_tasks[key] = str(run_dir)
                score = table.get(key)
                if score is None:
                    skipped.append(where.model_copy(update={"reason": "not judged (no score in the judged file)"}))
                    continue
                row.score = score
                if min_score is not None and score < min_score:
                    skipped.append(where.model_copy(update={"reason": f"score {score} below --min-score {min_score}"}))
                    continue
            rows.append(row)
    return rows, skipped


def _row_from_trajectory(path: Path, run_index: int, store: ImageStore, keep_invalid_turns: bool) -> SFTRow | None:
    from gensearcher.agent.trajectory import load_trajectory  # data sits below agent: imported where used

    trajectory = load_trajectory(path)
    if trajectory.termination != "answer":
        raise ValueError(f"termination is {trajectory.termination!r}, not 'answer'")
    flawed = next((step for step in trajectory.steps if step.problem), None)
    if flawed is not None and not keep_invalid_turns:
        raise ValueError(f"round {flawed.round} was not usable ({flawed.problem}); --keep-invalid-turns keeps such runs")
    messages = trajectory_messages(trajectory.messages)
    check_control_tokens(messages)
    messages = [m.model_copy(update={"images": [store.add_exact(i) for i in m.images]}) for m in messages]
    task_id = None if trajectory.task.id is None else str(trajectory.task.id)
    return SFTRow(id=f"{run_index}/{task_id if task_id is not None else path.stem}", messages=messages,
                  source="trajectory", origin=str(path), task_id=task_id, prompt=trajectory.task.prompt)


def trajectory_messages(messages: list[Message]) -> list[Message]:
    """The conversation to train on: the trajectory's messages as they are, checked for shape.

    It must start with the system prompt and the task, and end with the assistant's answer.
    """
    if len(messages) < 3 or messages[0].role != "system" or messages[1].role != "user":
        raise ValueError("the conversation does not start with the system prompt and the task")
    if messages[-1].role != "assistant":
        raise ValueError("the conversation does not end with an assistant turn")
    return list(messages)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return f"not a trajectory: {exc.errors()[0]['msg']}"
    return str(exc)


def summary(rows: list[SFTRow]) -> dict[str, object]:
    """Counts for `stats` and the import/convert reports: rows, turns, images, estimated tokens per row."""
    if not rows:
        return {"rows": 0}
    turns = [sum(1 for m in row.messages if m.role == "assistant") for row in rows]
    images = [len(row.images) for row in rows]
    tokens = [estimate_tokens(row.messages) for row in rows]

    def spread(values: list[int]) -> dict[str, float]:
        ordered = sorted(values)
        return {"min": ordered[0], "mean": round(sum(ordered) / len(ordered), 1), "max": ordered[-1]}

    return {"rows": len(rows), "assistant_turns": spread(turns), "images": spread(images),
            "distinct_images": len({i.sha256 for row in rows for i in row.images}),
            "tokens_estimated": spread(tokens), "scored": sum(1 for row in rows if row.score is not None)}


def estimate_tokens(messages: list[Message]) -> int:
    """~3 characters per text token and one token per 28x28 pixels (the agent's context-guard estimate)."""
    return sum(len(m.text) // 3 + sum(i.width * i.height for i in m.images) // (28 * 28) + 4 for m in messages)


def dumps_report(manifest: SFTManifest, rows: list[SFTRow]) -> str:
    return json.dumps({"summary": summary(rows), "skipped": len(manifest.skipped),
                       "skipped_rows": [s.model_dump() for s in manifest.skipped[:50]]}, indent=2, ensure_ascii=False)
