"""The record-and-replay cache: every external call of the tools, stored content-addressed.

An entry is keyed by a namespace (the backend: "serper.search", "fetch", "summary" ...) and the normalised
request; its value is a blob (stored once per content hash) plus a little metadata. Modes:

    readwrite  use entries, fetch and store misses (default)
    replay     no network at all: a miss is an error naming the request
    record     always fetch, and overwrite the entry
    off        always fetch, store nothing

Trajectories list the keys their tool calls used, so `export` can write exactly the entries one run used:
a frozen web for that benchmark run, which `import` loads elsewhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil
import sqlite3
import tarfile
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

from gensearcher._files import write_atomic
from gensearcher.errors import ToolError, UserError

Mode = str


class CacheMiss(ToolError):
    """Replay mode found no entry for a request."""

    outage = True  # the recorded world lacks the call: the run cannot be scored as if the web had answered


class CachedValue(BaseModel):
    key: str
    body: bytes
    meta: dict[str, Any] = {}
    hit: bool


def cache_key(namespace: str, request: dict[str, Any]) -> str:
    canonical = json.dumps({"ns": namespace, "request": request}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class WebCache:
    """SQLite index + blob folder. Safe to share between concurrent tasks of one event loop.

    Concurrent requests for the same key share one fetch (the rollouts of one GRPO prompt, or a batch's
    duplicate queries, pay once): the first caller fetches, the others wait for its answer.
    """

    def __init__(self, root: Path, *, mode: Mode = "readwrite", max_age_s: float | None = None):
        if mode not in ("readwrite", "replay", "record", "off"):
            raise UserError(f"unknown cache mode {mode!r}: readwrite, replay, record or off")
        self.root = root
        self.mode = mode
        self.max_age_s = max_age_s
        self.root.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.root / "index.sqlite", isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, namespace TEXT, request TEXT, meta TEXT, "
            "blob TEXT, created REAL)"
        )
        self._inflight: dict[str, asyncio.Future[CachedValue]] = {}

    def close(self) -> None:
        self._db.close()

    async def get_or_fetch(self, namespace: str, request: dict[str, Any],
                           fetch: Callable[[], Awaitable[tuple[bytes, dict[str, Any]]]],
                           *, used: list[str] | None = None,
                           valid: Callable[[bytes, dict[str, Any]], bool] | None = None) -> CachedValue:
        """The cached value of `request`, or `fetch()`'s (stored per the mode). Appends the key to `used`.

        `valid(body, meta)` False marks a stored entry as unusable (an error answer recorded by an older
        version): it is dropped and fetched again, never replayed.
        """
        key = cache_key(namespace, request)
        if used is not None and key not in used:
            used.append(key)
        if self.mode in ("readwrite", "replay"):
            found = self.lookup(key)
            if found is not None and valid is not None and not valid(found.body, found.meta):
                self._db.execute("DELETE FROM entries WHERE key = ?", (key,))
                found = None
            if found is not None:
                return found
            if self.mode == "replay":
                raise CacheMiss(f"replay mode: no cached {namespace} for {json.dumps(request, ensure_ascii=False)[:300]}")
        if self.mode == "off":
            body, meta = await fetch()
            return CachedValue(key=key, body=body, meta=meta, hit=False)
        while (waiting := self._inflight.get(key)) is not None:
            try:
                value = await asyncio.shield(waiting)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not waiting.cancelled() or (task is not None and task.cancelling()):
                    raise
                continue  # the fetching caller was cancelled, not this one: fetch again
            return value.model_copy(update={"hit": True})
        future: asyncio.Future[CachedValue] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            body, meta = await fetch()
            self.store(key, namespace, request, body, meta)
            value = CachedValue(key=key, body=body, meta=meta, hit=False)
            future.set_result(value)
            return value
        except Exception as exc:
            # Waiters get the same failure; a later call fetches again (failures are never stored).
            future.set_exception(exc)
            future.exception()  # retrieved, so an unwaited failure is not reported as lost
            raise
        finally:
            if not future.done():
                future.cancel()
            del self._inflight[key]

    def lookup(self, key: str) -> CachedValue | None:
        """The stored value of `key`, if any and fresh enough."""
        row = self._db.execute("SELECT meta, blob, created FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        meta, blob, created = row
        if self.max_age_s is not None and time.time() - created > self.max_age_s:
            return None
        body = self._read_blob(blob)
        if body is None:
            return None
        return CachedValue(key=key, body=body, meta=json.loads(meta), hit=True)

    def store(self, key: str, namespace: str, request: dict[str, Any], body: bytes, meta: dict[str, Any],
              *, created: float | None = None) -> None:
        blob = hashlib.sha256(body).hexdigest()
        if self._read_blob(blob) is None:
            # Renamed into place whole, never torn by a killed process; not fsynced (this runs on the event
            # loop, once per fetch). The index row is durable, the blob may not be: after a power cut it can
            # be empty or short, which `_read_blob` tells by its hash, so the entry is fetched again and
            # this rewrites it.
            write_atomic(self._blob_path(blob), body, fsync=False)
        self._db.execute(
            "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
            (key, namespace, json.dumps(request, ensure_ascii=False), json.dumps(meta, ensure_ascii=False), blob,
             created if created is not None else time.time()),
        )

    def _blob_path(self, blob: str) -> Path:
        return self.root / "blobs" / blob[:2] / blob

    def _read_blob(self, blob: str) -> bytes | None:
        """The blob's bytes, or None when it is missing or not what its name (its sha256) says."""
        try:
            body = self._blob_path(blob).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return body if hashlib.sha256(body).hexdigest() == blob else None

    # -- export / import ---------------------------------------------------------------------------

    def export(self, keys: Iterable[str], out: Path) -> tuple[int, list[str]]:
        """Write the entries for `keys` into a tar file. Returns (entries written, keys not found)."""
        rows, missing = [], []
        for key in dict.fromkeys(keys):
            row = self._db.execute("SELECT key, namespace, request, meta, blob, created FROM entries WHERE key = ?",
                                   (key,)).fetchone()
            if row is None or self._read_blob(row[4]) is None:  # a torn blob would spoil the import
                missing.append(key)
            else:
                rows.append(row)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            lines = "\n".join(json.dumps(dict(zip(("key", "namespace", "request", "meta", "blob", "created"), row,
                                                  strict=True))) for row in rows)
            _add_bytes(tar, "entries.jsonl", lines.encode("utf-8"))
            for blob in sorted({row[4] for row in rows}):
                _add_bytes(tar, f"blobs/{blob}", self._blob_path(blob).read_bytes())
        write_atomic(out, buffer.getvalue())
        return len(rows), missing

    def import_archive(self, archive: Path) -> int:
        """Load a tar written by `export`. Returns entries loaded.

        Members are streamed, never read whole into memory (the entry list has its own cap); each blob is
        checked against its hash and each key against its namespace and request, so an archive cannot
        plant an answer under another request's key. Nothing is stored unless the whole archive checks out.
        """
        if not archive.is_file():
            raise UserError(f"cache archive not found: {archive}")
        staging = self.root / "import.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            entries, blobs = self._read_archive(archive, staging)
            for entry in entries:
                if entry.blob not in blobs:
                    raise UserError(f"{archive}: blob {entry.blob[:12]} is missing")
            for blob in blobs:
                path = self._blob_path(blob)
                if self._read_blob(blob) is None:  # missing, or torn by a power cut: the archive's is whole
                    path.parent.mkdir(parents=True, exist_ok=True)
                    (staging / blob).replace(path)
            for entry in entries:
                self._db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                                 (entry.key, entry.namespace, entry.request, entry.meta, entry.blob, entry.created))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return len(entries)

    def _read_archive(self, archive: Path, staging: Path) -> tuple[list[_ArchiveEntry], set[str]]:
        entries: list[_ArchiveEntry] = []
        blobs: set[str] = set()
        try:
            with tarfile.open(archive, mode="r:*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    handle = tar.extractfile(member)
                    if handle is None:
                        continue
                    if member.name == "entries.jsonl":
                        if member.size > MAX_ENTRIES_BYTES:
                            raise UserError(f"{archive}: entries.jsonl is larger than {MAX_ENTRIES_BYTES} bytes")
                        entries = [_entry(archive, line) for line in handle.read().decode("utf-8").splitlines()
                                   if line.strip()]
                    elif member.name.startswith("blobs/"):
                        blobs.add(_stream_blob(archive, member.name.removeprefix("blobs/"), handle, staging))
        except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{archive} is not a gensearcher cache archive: {exc}") from None
        return entries, blobs


MAX_ENTRIES_BYTES = 256 * 2**20
_HEX = frozenset("0123456789abcdef")


class _ArchiveEntry(BaseModel):
    """One row of an exported cache, as checked on import."""

    key: str
    namespace: str
    request: str  # JSON text, as stored in the index
    meta: str
    blob: str
    created: float


def _entry(archive: Path, line: str) -> _ArchiveEntry:
    try:
        entry = _ArchiveEntry.model_validate_json(line)
        request, meta = json.loads(entry.request), json.loads(entry.meta)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{archive}: an entry is malformed: {str(exc)[:200]}") from None
    if not isinstance(request, dict) or not isinstance(meta, dict):
        raise UserError(f"{archive}: an entry's request or meta is not an object")
    if cache_key(entry.namespace, request) != entry.key:
        raise UserError(f"{archive}: entry {entry.key[:12]} does not match its request (a planted answer?)")
    if len(entry.blob) != 64 or not set(entry.blob) <= _HEX:
        raise UserError(f"{archive}: entry {entry.key[:12]} names an invalid blob")
    return entry


def _stream_blob(archive: Path, name: str, handle: IO[bytes], staging: Path) -> str:
    if len(name) != 64 or not set(name) <= _HEX:
        raise UserError(f"{archive}: unexpected member blobs/{name[:80]}")
    digest = hashlib.sha256()
    with (staging / name).open("wb") as out:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != name:
        raise UserError(f"{archive}: blob {name[:12]} is corrupt")
    return name


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))
