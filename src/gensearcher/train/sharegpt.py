"""LLaMA-Factory "sharegpt" files (the reference system's Gen-Searcher-SFT-10k) in and out of our dataset.

Import checks every row (see `check_row`) and leaves out bad ones with their index and reason; the
images go through the agent's own pixel cap (`images.prepare_for_policy`), so an imported picture reaches
the model as an agent's would. `<image>` placeholders must open their user turn (the reference's
convention): they become the message's images, which our renderer places before the text, the same
tokens LLaMA-Factory's Qwen3-VL template produces for them.

Export writes our rows as sharegpt plus the `dataset_info.json` entry. Sharegpt needs strict
user/assistant alternation, so consecutive user turns (the last tool response and the final-round
message) are merged there, with each turn's placeholders kept where its images were.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gensearcher._files import write_atomic
from gensearcher.data.io import read_rows
from gensearcher.errors import ToolError, UserError
from gensearcher.images import prepare_for_policy
from gensearcher.messages import ImageRef, Message
from gensearcher.train.dataset import (
    ImageStore,
    SFTManifest,
    SFTRow,
    SkippedRow,
    check_control_tokens,
    prepare_out,
    write_dataset,
)

PLACEHOLDER = "<image>"
_LEADING = re.compile(r"^(?:<image>)+")
_IMG_ID = re.compile(r"IMG_\d+")


class BadRow(UserError):
    """A row that cannot be trained on; the message is the reason reported for it."""


def import_sharegpt(path: Path, out: Path, *, images_root: Path | None, max_pixels: int) -> tuple[SFTManifest, list[SFTRow]]:
    """Import a sharegpt JSON/JSONL file into a new dataset folder `out`; bad rows are reported, not fatal."""
    items = read_rows(path)
    store = prepare_out(out)
    rows: list[SFTRow] = []
    skipped: list[SkippedRow] = []
    seen = _prepare_images(items, path, images_root, store, max_pixels)  # each distinct file once, in threads
    for index, item in enumerate(items):
        try:
            messages = check_row(item, source=path, images_root=images_root, store=store, max_pixels=max_pixels,
                                 seen=seen)
        except BadRow as exc:
            skipped.append(SkippedRow(index=index, source=str(path), reason=str(exc)))
            continue
        rows.append(SFTRow(id=str(index), messages=messages, source="reference", origin=f"{path}#{index}",
                           prompt=next(m.text for m in messages if m.role == "user")))
    manifest = SFTManifest(max_pixels=max_pixels, sources=[str(path)], skipped=skipped)
    return write_dataset(store, rows, manifest), rows


def check_row(item: Any, *, source: Path, images_root: Path | None, store: ImageStore, max_pixels: int,
              seen: dict[Path, ImageRef] | None = None) -> list[Message]:
    """Validate one sharegpt row and turn it into our messages. Raises BadRow with the reason.

    Checks: messages with known roles and string content; an optional leading system turn, then strict
    user/assistant alternation ending with the assistant; as many `<image>` placeholders as images, each
    at the start of a user turn; every image exists and decodes; every assistant turn parses under our
    protocol (a tool call or an answer); every IMG id an answer cites was shown before.
    """
    if not isinstance(item, dict):
        raise BadRow("not an object")
    raw, paths = item.get("messages"), item.get("images") or []
    if not isinstance(raw, list) or not raw:
        raise BadRow("no 'messages' list")
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise BadRow("'images' is not a list of paths")
    turns = _turns(raw)
    placeholders = sum(text.count(PLACEHOLDER) for _, text in turns)
    if placeholders != len(paths):
        raise BadRow(f"{placeholders} <image> placeholders but {len(paths)} images")
    messages: list[Message] = []
    queue = list(paths)
    base = source.resolve().parent
    for number, (role, text) in enumerate(turns):
        leading = _LEADING.match(text)
        count = leading.group(0).count(PLACEHOLDER) if leading else 0
        body = text[leading.end():] if leading else text
        if PLACEHOLDER in body:
            raise BadRow(f"turn {number} ({role}): an <image> placeholder is not at the start of a user turn")
        if count and role != "user":
            raise BadRow(f"turn {number} ({role}): images are only allowed in user turns")
        images = [_image(queue.pop(0), base, images_root, store, max_pixels, {} if seen is None else seen)
                  for _ in range(count)]
        messages.append(Message(role=role, text=body, images=images))
    try:
        check_control_tokens(messages)
    except ValueError as exc:
        raise BadRow(str(exc)) from None
    _check_turns(messages)
    return messages


def _turns(raw: list[Any]) -> list[tuple[str, str]]:
    turns = []
    for number, message in enumerate(raw):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise BadRow(f"turn {number} has no string 'content'")
        role = message.get("role")
        if role not in ("system", "user", "assistant"):
            raise BadRow(f"turn {number} has role {role!r} (sharegpt rows use system, user, assistant)")
        if role == "system" and number != 0:
            raise BadRow(f"turn {number}: a system turn is only allowed first")
        turns.append((role, message["content"]))
    body = turns[1:] if turns[0][0] == "system" else turns
    if not body or len(body) % 2:
        raise BadRow("after the system turn the row needs user/assistant pairs (an even count)")
    for number, (role, _) in enumerate(body):
        if role != ("user" if number % 2 == 0 else "assistant"):
            raise BadRow(f"roles do not alternate user/assistant at turn {number + len(turns) - len(body)}")
    return turns


def _prepare_images(items: list[Any], source: Path, images_root: Path | None, store: ImageStore,
                    max_pixels: int) -> dict[Path, ImageRef]:
    """Cap every distinct image the rows name, concurrently (PIL decodes and resizes outside the GIL).

    Files that fail are left out here; the row that names one reports why.
    """
    names = {p for item in items if isinstance(item, dict) and isinstance(item.get("images"), list)
             for p in item["images"] if isinstance(p, str) and p}
    base = source.resolve().parent
    files = {Path(os.path.abspath(_locate(name, base, images_root))) for name in names}
    files = {f for f in files if f.is_file()}

    def cap(path: Path) -> tuple[Path, ImageRef | None]:
        try:
            return path, prepare_for_policy(path, store.folder, max_pixels)
        except ToolError:
            return path, None

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return {path: ref for path, ref in pool.map(cap, sorted(files)) if ref is not None}


def _locate(value: str, base: Path, images_root: Path | None) -> Path:
    """Where an image path of the file points: under --images-root if it is there, else beside the file."""
    candidate = Path(value).expanduser()
    if not candidate.is_absolute():
        bases = [images_root] if images_root is not None else []
        bases.append(base)
        candidate = next((base / candidate for base in bases if (base / candidate).is_file()), candidate)
    return candidate


def _image(value: str, base: Path, images_root: Path | None, store: ImageStore, max_pixels: int,
           seen: dict[Path, ImageRef]) -> ImageRef:
    candidate = _locate(value, base, images_root)
    if not candidate.is_file():
        raise BadRow(f"image {value!r} not found" + (f" (under {images_root})" if images_root else ""))
    key = Path(os.path.abspath(candidate))
    if key in seen:
        return seen[key]
    try:
        seen[key] = prepare_for_policy(candidate, store.folder, max_pixels)
        return seen[key]
    except ToolError as exc:
        raise BadRow(f"image {value!r} does not decode: {exc}") from None


def _check_turns(messages: list[Message]) -> None:
    from gensearcher.agent.protocol import AnswerTurn, InvalidTurn, parse_turn  # data sits below agent

    shown: set[str] = set()
    for number, message in enumerate(messages):
        if message.role == "user":
            shown.update(_IMG_ID.findall(message.text))
            continue
        if message.role != "assistant":
            continue
        turn = parse_turn(message.text, final_round=number == len(messages) - 1)
        if isinstance(turn, InvalidTurn):
            raise BadRow(f"turn {number} (assistant) does not parse: {turn.problem}")
        if isinstance(turn, AnswerTurn):
            refs = turn.payload.get("reference_images") or []
            if not isinstance(refs, list):
                raise BadRow(f"turn {number}: reference_images is not a list")
            for ref in refs:
                img_id = ref.get("img_id") if isinstance(ref, dict) else None
                if img_id not in shown:
                    raise BadRow(f"turn {number}: the answer cites {img_id!r}, which no earlier turn showed")


# --- export ---------------------------------------------------------------------------------------------------


def export_llamafactory(rows: list[SFTRow], dataset: Path, out: Path, *, name: str) -> tuple[Path, list[SkippedRow]]:
    """Write `out/<name>.json` (sharegpt), `out/images/` and `out/dataset_info.json`.

    Returns the data file and the rows left out: a row whose text holds a literal `<image>` cannot be
    written, since LLaMA-Factory would count it as a picture.
    """
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise UserError(f"--name {name!r}: use letters, digits, '_' and '-'")
    data_file = out / f"{name}.json"
    if data_file.exists():
        raise UserError(f"{data_file} exists: choose another --out or --name")
    (out / "images").mkdir(parents=True, exist_ok=True)
    items = []
    skipped = []
    for row in rows:
        if any(PLACEHOLDER in message.text for message in row.messages):
            skipped.append(SkippedRow(index=row.id, source=str(dataset), reason="a text holds a literal <image>"))
            continue
        messages, images = [], []
        for message in merge_user_turns(row.messages):
            messages.append({"role": message.role, "content": message.text})
        for image in row.images:
            target = out / "images" / Path(image.path).name
            if not target.exists():
                shutil.copyfile(image.path, target)
            images.append(f"images/{target.name}")
        items.append({"messages": messages, "images": images})
    write_atomic(data_file, json.dumps(items, ensure_ascii=False, indent=1).encode("utf-8"))
    info_path = out / "dataset_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    info[name] = dataset_info_entry(data_file.name)
    write_atomic(info_path, json.dumps(info, indent=2).encode("utf-8"))
    return data_file, skipped


def dataset_info_entry(file_name: str) -> dict[str, Any]:
    """The LLaMA-Factory registration of a sharegpt file with `messages` and `images` columns."""
    return {"file_name": file_name, "formatting": "sharegpt", "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                     "system_tag": "system"}}


def merge_user_turns(messages: list[Message]) -> list[Message]:
    """Sharegpt text: placeholders where each turn's images were, consecutive user turns joined by a newline."""
    merged: list[Message] = []
    for message in messages:
        text = PLACEHOLDER * len(message.images) + message.text
        if merged and message.role == "user" and merged[-1].role == "user":
            merged[-1] = merged[-1].model_copy(update={"text": merged[-1].text + "\n" + text})
        else:
            merged.append(Message(role=message.role, text=text))
    return merged
