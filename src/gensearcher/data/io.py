"""Reading and writing the record files: one reader for JSON and JSONL, paths, and a throttled writer.

`read_rows` decides between JSON and JSONL by content, never by file suffix (as the reference does): a
pretty-printed single object, a JSON array and one object per line all read. `resolve_path` is the one
rule for relative paths in an input file. `ThrottledWriter` keeps a batch's output file current without
rewriting it after every item, so bookkeeping costs the same per item at 100 and at 100,000 items.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gensearcher._files import write_atomic
from gensearcher.data.records import Task
from gensearcher.errors import GenSearcherError, UserError

RecordT = TypeVar("RecordT", bound=BaseModel)
ItemT = TypeVar("ItemT")
logger = logging.getLogger(__name__)


class PathNotFound(GenSearcherError):
    """A path named in an input file exists in none of the places it may be relative to (an item error)."""


def read_rows(path: Path) -> list[Any]:
    """The items of a JSON file (an array, or one object) or a JSONL file (one value per line).

    Raises UserError naming the file (and the line, for JSONL) when it cannot be read.
    """
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    stripped = text.strip()
    if not stripped:
        raise UserError(f"{path} is empty")
    try:
        whole = json.loads(stripped)
    except json.JSONDecodeError as whole_error:
        if stripped.startswith("["):
            raise UserError(f"{path} is not valid JSON: {whole_error}") from None
        return _read_lines(path, text)
    return whole if isinstance(whole, list) else [whole]


def _read_lines(path: Path, text: str) -> list[Any]:
    rows = []
    # Split on newlines only: str.splitlines also splits on U+2028 and other separators that JSON strings
    # written with ensure_ascii=False may hold.
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}: line {number} is not valid JSON (read as JSONL): {exc.msg}") from None
    return rows


def validation_message(exc: ValidationError) -> str:
    """The first problem of a validation error, as `field.sub: message` (never the input value)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "item"
    return f"{where}: {first['msg']}"


def read_records(path: Path, model: type[RecordT], *, skip: Callable[[dict[str, Any]], bool] | None = None,
                 default_ids: bool = True) -> list[RecordT]:
    """Every row of `path` as `model`, in file order. A bad row is a UserError naming its index and field.

    `skip` drops rows before validation (summary rows, pending rows); `default_ids` gives a row without
    an `id` its index among the rows read, as the reference does. An explicit `"id": null` is an error.
    """
    records = []
    for index, row in enumerate(read_rows(path)):
        if not isinstance(row, dict):
            raise UserError(f"{path}: item {index} is not an object")
        if skip is not None and skip(row):
            continue
        if default_ids and "id" not in row:
            row = {"id": index, **row}
        if "id" in row and row["id"] is None:
            raise UserError(f"{path}: item {index}: id is null")
        try:
            records.append(model.model_validate(row))
        except ValidationError as exc:
            raise UserError(f"{path}: item {index}: {validation_message(exc)}") from None
    return records


def read_tasks(path: Path) -> list[Task]:
    """Tasks from JSON (a list or one object) or JSONL: KnowGen-style objects or plain prompt strings.

    Ids are kept as given (numbers or strings); a missing id becomes the item's index; `"id": null` is an
    error. A relative `gt_image` (or legacy `gen_image`) is made absolute by `resolve_path`; one that
    exists nowhere is logged and kept, absolute against the file's folder (the judge fails that item).
    """
    items = read_rows(path)
    if not items:
        raise UserError(f"{path} holds no tasks")
    tasks: list[Task] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            item = {"id": index, "prompt": item}
        if not isinstance(item, dict):
            raise UserError(f"{path}: item {index} is neither a prompt string nor an object")
        if "id" not in item:
            item = {"id": index, **item}
        if item["id"] is None:
            raise UserError(f"{path}: item {index}: id is null")
        try:
            task = Task.model_validate(item)
        except ValidationError as exc:
            raise UserError(f"{path}: item {index}: {validation_message(exc)}") from None
        if task.gt_image:
            try:
                task.gt_image = str(resolve_path(task.gt_image, path, what="gt_image"))
            except PathNotFound as exc:
                logger.warning("%s: item %r: %s", path, task.id, exc)
                task.gt_image = resolve_or_keep(task.gt_image, path)
        tasks.append(task)
    unique_ids(tasks, path)
    return tasks


def unique_ids(records: Iterable[Any], source: Path) -> None:
    """Raise UserError on the first id that appears twice (ids compare as strings, like file names)."""
    seen: set[str] = set()
    for record in records:
        key = str(record.id)
        if key in seen:
            raise UserError(f"{source}: duplicate id {record.id!r}")
        seen.add(key)


def resolve_path(value: str, source: Path, *, what: str = "file") -> Path:
    """An existing file named in the input file `source`, as an absolute path.

    A relative path is tried against `source`'s folder (as named, then with links resolved), then the
    working folder, then a folder above `source` whose child named by the path's first part leads back
    down to `source` (the reference runner writes paths like `eval_output/test/ref_images/x.jpg` relative
    to the folder it was started in, which holds its output folder; an unrelated file of the same name
    elsewhere above is never picked up). Raises PathNotFound naming the places tried.
    """
    candidate = Path(value).expanduser()
    if candidate.is_absolute():
        if candidate.is_file():
            return candidate
        raise PathNotFound(f"{what} not found: {value}")
    named = source.absolute().parent
    base = source.resolve().parent
    first = candidate.parts[0] if candidate.parts else ""
    chain = {named, *named.parents, base, *base.parents}
    above = [folder for folder in (*named.parents, *base.parents) if first and folder / first in chain]
    for folder in dict.fromkeys([named, base, Path.cwd(), *above]):
        path = folder / candidate
        if path.is_file():
            return path.resolve()
    raise PathNotFound(f"{what} {value!r} not found relative to the input file's folder ({named}) nor the "
                       f"working folder ({Path.cwd()}), nor the folders above the input file")


def resolve_or_keep(value: str | None, source: Path) -> str | None:
    """`resolve_path` as a string; a path found nowhere is made absolute against `source`'s folder.

    For paths a stage carries but does not read (`gt_image` through research and generation): the stage
    that needs the file reports it missing, with an absolute path that says where it was looked for.
    """
    if not value:
        return value
    try:
        return str(resolve_path(value, source))
    except PathNotFound:
        candidate = Path(value).expanduser()
        return str(candidate if candidate.is_absolute() else source.resolve().parent / candidate)


class ThrottledWriter:
    """A batch's output file, kept current by rewrites at most every `interval` seconds.

    Rows are held serialised, by key, and written in key order; `render` joins them into the file's bytes.
    A rewrite runs in a worker thread (never on the event loop) and the next one waits at least ten times
    as long as the last one took, so a file that has grown large is rewritten less often: the writing
    costs a bounded share of the run whatever its size. `flush()` writes the final state.
    """

    def __init__(self, path: Path, order: list[str], render: Callable[[list[str]], Iterable[bytes]], *,
                 interval: float = 1.0, tail: Callable[[], list[str]] | None = None):
        self.path = path
        self.order = order
        self.render = render
        self.interval = interval
        self.tail = tail  # rows after the keyed ones (summary rows), computed when a write is taken
        self.rows: dict[str, str] = {}
        self._last = 0.0
        self._gap = interval
        self._pending: asyncio.Future[None] | None = None
        # Writes are numbered when their snapshot is taken and serialised by the lock; one older than
        # the last written is dropped, so a background rewrite that ends after the final write (a kill
        # during a rewrite) can never put an older file back.
        self._lock = threading.Lock()
        self._taken = 0
        self._written = 0
        self._snapshot_s = 0.0

    def put(self, key: str, row: str) -> None:
        self.rows[key] = row

    def _snapshot(self) -> tuple[int, list[str]]:
        rows = [self.rows[key] for key in self.order if key in self.rows]
        self._taken += 1
        return self._taken, rows + self.tail() if self.tail is not None else rows

    def _write(self, snapshot: tuple[int, list[str]], *, fsync: bool = False) -> None:
        number, rows = snapshot
        with self._lock:
            if number <= self._written:
                return
            start = time.monotonic()
            write_atomic(self.path, self.render(rows), fsync=fsync)
            self._written = number
            self._gap = max(self.interval, 10 * (time.monotonic() - start + self._snapshot_s))

    async def maybe_write(self) -> None:
        """Start a rewrite in the background if the last one is done and old enough."""
        now = time.monotonic()
        if (self._pending is not None and not self._pending.done()) or now - self._last < self._gap:
            return
        self._last = now
        snapshot = self._snapshot()  # on the loop: the rows and any summary rows, as of now
        self._snapshot_s = time.monotonic() - now
        self._pending = asyncio.ensure_future(asyncio.to_thread(self._write, snapshot))

    async def flush(self) -> None:
        """Wait for a rewrite in flight, then write the current state (with fsync)."""
        if self._pending is not None:
            # A failed background rewrite is not reported here: the final write below meets the same
            # problem (a full disk, a removed folder) and raises it.
            await asyncio.gather(self._pending, return_exceptions=True)
        await asyncio.to_thread(self._write, self._snapshot(), fsync=True)

    def flush_sync(self) -> None:
        """The final write from synchronous code (after cancellation, when no loop may run)."""
        self._write(self._snapshot(), fsync=True)


async def run_batch(items: list[ItemT], work: Callable[[ItemT], Awaitable[RecordT]], writer: ThrottledWriter, *,
                    concurrency: int, record: Callable[[RecordT], None] | None = None,
                    on_item: Callable[[RecordT, int, int], None] | None = None, finished: int = 0,
                    total: int | None = None) -> None:
    """The one batch loop of the research, generation and judging runners.

    `concurrency` workers take the items in order. Each result row is recorded (`record`: the runner's
    own bookkeeping, before a write is taken, so summary rows computed from it are current), put into
    `writer` under its id, and reported as `on_item(row, finished so far, total)`; `finished` counts the
    rows done before this call (a resume). A failure or a kill cancels the other workers and writes what
    was finished before it propagates; otherwise the file is flushed at the end.
    """
    queue = list(reversed(items))
    total = len(items) + finished if total is None else total

    async def worker() -> None:
        nonlocal finished
        while queue:
            row = await work(queue.pop())
            if record is not None:
                record(row)
            # Every batch row (research, generation, judged) has an id; Record itself does not declare one.
            writer.put(str(row.id), dumps(row))  # type: ignore[attr-defined]
            finished += 1
            if on_item is not None:
                on_item(row, finished, total)
            await writer.maybe_write()

    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(items)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for future in workers:
            future.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        writer.flush_sync()
        raise
    await writer.flush()


def json_array(rows: list[str]) -> Iterator[bytes]:
    """Serialised JSON values as one JSON array, one value per line, in chunks (never joined whole)."""
    yield b"[\n"
    for index, row in enumerate(rows):
        yield (row + ",\n" if index < len(rows) - 1 else row + "\n").encode("utf-8")
    yield b"]\n"


def dumps(record: BaseModel | dict[str, Any]) -> str:
    """One record as compact JSON (non-ASCII kept)."""
    value = record.to_json() if hasattr(record, "to_json") else record
    return json.dumps(value, ensure_ascii=False)
