"""Text extraction in worker processes that a deadline really stops.

trafilatura and pypdf are pure CPU work that no asyncio timeout can interrupt: a 16 MB link-heavy page
costs a minute of CPU and gigabytes of memory, and in a thread it kept running after the tool call had
timed out, starving every other thread. Here each document goes to a worker process of the pool's own;
a worker that passes the deadline is killed (its memory goes with it) and replaced. What reaches a
worker's extractor is capped too: scripts and styles are dropped from a large page, then what is still
beyond `max_bytes` is cut (the main text of a page is near its start); a larger PDF is refused.

Workers are started with `spawn` (forking a process that runs threads is unsafe) on first use and kept
warm; waiting on them happens in the pool's own threads, never in the event loop's default executor.
As with any `spawn` user, a script that builds the tools at import time needs the usual
`if __name__ == "__main__":` guard (the workers import the main module).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import weakref
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from gensearcher.errors import ToolError

logger = logging.getLogger(__name__)

STARTUP_S = 120.0  # a cold start imports trafilatura and lxml; on a busy machine that takes a while


def _serve(conn: Connection) -> None:
    """The worker: (body, content type, url) in, ("ok", title, text) or ("error", message) out."""
    from gensearcher.web.extract import extract_text

    # One read before "ready": imports and the parsers' first-use set-up are not counted in any deadline.
    extract_text(b"<html><head><title>t</title></head><body><p>warm up</p></body></html>", "text/html")
    conn.send("ready")
    while True:
        try:
            body, content_type, url, max_bytes = conn.recv()
        except (EOFError, OSError):
            return
        try:
            title, text = extract_text(shrink_html(body, max_bytes), content_type, url)
            reply: tuple[Any, ...] = ("ok", title, text)
        except ToolError as exc:
            reply = ("error", str(exc))
        except Exception as exc:  # noqa: BLE001 - a parser crash on hostile input is that document's problem only
            reply = ("error", f"the document could not be read ({type(exc).__name__})")
        conn.send(reply)


def shrink_html(body: bytes, max_bytes: int) -> bytes:
    """At most `max_bytes` of a document for the extractor: scripts and styles (which pages fill with
    megabytes of JSON and code, never main text) go first, then the rest is cut. Linear in the size,
    whatever the page holds. PDFs and small documents pass unchanged."""
    if len(body) <= max_bytes or body[:5] == b"%PDF-":
        return body
    for tag in (b"script", b"style"):
        body = _drop_elements(body, tag)
        if len(body) <= max_bytes:
            return body
    return body[:max_bytes]


def _drop_elements(body: bytes, tag: bytes) -> bytes:
    lower = body.lower()
    opening, closing = b"<" + tag, b"</" + tag
    kept, position = [], 0
    while (start := lower.find(opening, position)) != -1:
        kept.append(body[position:start])
        end = lower.find(closing, start)
        if end == -1:
            return b"".join(kept)  # an unclosed element runs to the end of the page
        position = lower.find(b">", end)
        position = len(body) if position == -1 else position + 1
    kept.append(body[position:])
    return b"".join(kept)


class _Worker:
    def __init__(self, context: Any):
        self.conn, child = context.Pipe()
        self.process: BaseProcess = context.Process(target=_serve, args=(child,), daemon=True,
                                                    name="gensearcher-extract")
        self.process.start()
        child.close()
        if not self.conn.poll(STARTUP_S) or self.conn.recv() != "ready":
            self.kill()
            raise ToolError("the page reader did not start")

    def kill(self) -> None:
        # The connection is left to the garbage collector: a pool thread may still be inside recv() on it,
        # and the killed process's end closing is what wakes it (EOFError).
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.join(timeout=5)


class ExtractionPool:
    """`await pool.extract(body, content_type, url)` -> (title, text), within `timeout_s`, in another process.

    Args:
        workers: processes (documents extracted at once).
        timeout_s: deadline of one extraction; past it the worker is killed and ToolError raised.
        max_bytes: HTML/text beyond this (after scripts and styles) is cut before extraction; a larger PDF
            is refused.
        inline_bytes: documents up to this size are read in the pool's own threads (milliseconds each).
    """

    def __init__(self, *, workers: int = 2, timeout_s: float = 20.0, max_bytes: int = 1_000_000,
                 inline_bytes: int = 65_536):
        self.workers = workers
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.inline_bytes = inline_bytes
        # Small documents (most pages are under 64 KB of HTML) take milliseconds whatever they hold: they are
        # read in the pool's own threads, so they never queue behind a hostile page in a worker.
        self._inline = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gensearcher-extract-small")
        self._context = multiprocessing.get_context("spawn")
        self._idle: asyncio.Queue[_Worker | None] | None = None
        self._all: set[_Worker] = set()
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gensearcher-extract")
        # A pool dropped without close() still ends its processes.
        weakref.finalize(self, _kill_all, self._all)
        self.killed = 0  # workers killed at the deadline (for tests and benchmarks)

    def _queue(self) -> asyncio.Queue[_Worker | None]:
        if self._idle is None:
            self._idle = asyncio.Queue()
            for _ in range(self.workers):
                self._idle.put_nowait(None)  # a slot; its process starts on first use
        return self._idle

    async def start(self) -> None:
        """Start every worker now rather than on first use."""
        queue = self._queue()
        slots = [await queue.get() for _ in range(self.workers)]
        loop = asyncio.get_running_loop()
        try:
            slots = [slot if slot is not None and slot.process.is_alive() else
                     await loop.run_in_executor(self._threads, self._start) for slot in slots]
        finally:
            for slot in slots:
                queue.put_nowait(slot)

    async def extract(self, body: bytes, content_type: str, url: str = "") -> tuple[str, str]:
        body = self._bounded(body, content_type)
        if len(body) <= min(self.inline_bytes, self.max_bytes) and not body.startswith(b"%PDF-") and content_type != "application/pdf":
            from gensearcher.web.extract import extract_text

            return await asyncio.get_running_loop().run_in_executor(self._inline, extract_text, body, content_type, url)
        queue = self._queue()
        worker = await queue.get()
        try:
            if worker is None or not worker.process.is_alive():
                worker = await asyncio.get_running_loop().run_in_executor(self._threads, self._start)
            reply = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self._threads, _ask, worker, (body, content_type, url, self.max_bytes)),
                timeout=self.timeout_s)
        except BaseException as exc:  # the deadline, a cancelled tool call, a dead worker: end that process
            if worker is not None:
                self._discard(worker)
            worker = None
            if isinstance(exc, TimeoutError):
                raise ToolError(f"the page could not be read within {self.timeout_s:g} s") from None
            if isinstance(exc, (EOFError, OSError)):
                raise ToolError("the page could not be read (the reader stopped)") from None
            raise
        finally:
            queue.put_nowait(worker)
        if reply[0] == "error":
            raise ToolError(reply[1])
        return reply[1], reply[2]

    def _bounded(self, body: bytes, content_type: str) -> bytes:
        if len(body) > self.max_bytes and (content_type == "application/pdf" or body[:5] == b"%PDF-"):
            raise ToolError(f"the PDF is {len(body)} bytes; at most {self.max_bytes} are read")
        return body

    def _start(self) -> _Worker:
        worker = _Worker(self._context)
        self._all.add(worker)
        return worker

    def _discard(self, worker: _Worker) -> None:
        self.killed += 1
        self._all.discard(worker)
        worker.kill()

    def close(self) -> None:
        _kill_all(self._all)
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._inline.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        self.close()


def _kill_all(workers: set[_Worker]) -> None:
    for worker in list(workers):
        worker.kill()
    workers.clear()


def _ask(worker: _Worker, job: tuple[bytes, str, str, int]) -> tuple[Any, ...]:
    worker.conn.send(job)
    return worker.conn.recv()
