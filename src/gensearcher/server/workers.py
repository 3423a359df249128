"""Worker processes for the generator server: one pipeline each (one per GPU, or one or more on CPU).

Why processes: a pipeline call holds the GIL for much of its Python-side work, so two threads would not
run two pipelines at once on CPU; and a process can be killed, which is the only way to stop a call
that overran its timeout or wedged its device.

The pool keeps a bounded queue. Each worker has a dispatcher task that takes one job at a time, sends it
down the worker's pipe and waits for the answer carrying the same job id, so a result cannot reach
another request. A worker that dies, times out, or fails `failure_threshold` times in a row is restarted
(its pipelines reloaded) and takes no job meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from gensearcher.errors import GenerationError

logger = logging.getLogger(__name__)


class QueueFull(GenerationError):
    """The queue holds `max_queue` jobs; the server answers 429."""


class WorkerFailure(GenerationError):
    """The pipeline raised, or the worker died while running the job."""


class NoCapableWorker(GenerationError):
    """No worker has the kind of pipeline (text or edit) the job needs."""


@dataclass
class Job:
    id: int
    prompt: str
    images_png: list[bytes]
    params: dict[str, Any]
    future: asyncio.Future[tuple[bytes, int, int, float]]
    queued_at: float = field(default_factory=time.monotonic)
    worker: int | None = None
    attempts: int = 0


def _worker_main(conn: Connection, pipeline_kwargs: dict[str, Any], threads: int) -> None:
    """The worker process: load the pipelines, then answer jobs until the pipe closes."""
    import io

    import torch
    from PIL import Image

    from gensearcher.generate.diffusers_backend import PipelineSet

    torch.set_num_threads(threads)
    try:
        pipelines = PipelineSet(**pipeline_kwargs)
        kinds = pipelines.preload()
    except Exception as exc:  # noqa: BLE001 - any load failure goes to the parent, which retries later
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", kinds))
    while True:
        try:
            job_id, prompt, images_png, params = conn.recv()
        except (EOFError, OSError):
            return
        started = time.monotonic()
        try:
            images = [Image.open(io.BytesIO(data)).convert("RGB") for data in images_png]
            image = pipelines.run(prompt, images, params)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            conn.send((job_id, "ok", buffer.getvalue(), image.width, image.height, time.monotonic() - started))
        except Exception as exc:  # noqa: BLE001 - the job fails, the worker lives; the parent counts failures
            conn.send((job_id, "error", f"{type(exc).__name__}: {exc}"[:500]))


class Worker:
    def __init__(self, index: int, device: str):
        self.index = index
        self.device = device
        self.process: multiprocessing.process.BaseProcess | None = None
        self.conn: Connection | None = None
        self.ready = asyncio.Event()
        self.kinds: dict[str, bool] = {}
        self.job: Job | None = None
        self.failures = 0  # consecutive
        self.total_failures = 0
        self.restarts = 0
        self.served = 0

    def kill(self) -> None:
        self.ready.clear()  # takes no job, and /health says so, from now until it is reloaded
        if self.process is not None and self.process.is_alive():
            self.process.kill()


class WorkerPool:
    """Args:
        pipeline_kwargs: PipelineSet arguments shared by all workers (device is set per worker).
        devices: one entry per worker ('cpu', 'cuda:0', ...).
        max_queue: queued jobs before `submit` raises QueueFull.
        failure_threshold: consecutive failures before a worker is restarted.
    """

    def __init__(self, pipeline_kwargs: dict[str, Any], devices: list[str], *, max_queue: int = 64,
                 failure_threshold: int = 3, threads_per_worker: int | None = None):
        self.pipeline_kwargs = pipeline_kwargs
        self.workers = [Worker(i, device) for i, device in enumerate(devices)]
        self.max_queue = max_queue
        self.failure_threshold = failure_threshold
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=max_queue)
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._context = multiprocessing.get_context("spawn")
        # Blocking pipe reads and process joins get their own threads: the default executor is small.
        self._threads_pool = ThreadPoolExecutor(max_workers=2 * len(devices) + 2, thread_name_prefix="gensearcher-pool")
        cpu_workers = sum(1 for device in devices if device == "cpu") or 1
        self._threads = threads_per_worker or max(1, (os.cpu_count() or 1) // cpu_workers)
        self.completed = 0
        self.failed = 0
        self.latency_sum = 0.0

    async def start(self, *, wait: bool = True) -> None:
        for worker in self.workers:
            self._tasks.append(asyncio.create_task(self._lifecycle(worker)))
        if wait:
            await asyncio.gather(*(worker.ready.wait() for worker in self.workers))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for worker in self.workers:
            if worker.conn is not None:
                worker.conn.close()
            worker.kill()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._threads_pool.shutdown(wait=False, cancel_futures=True)

    async def _blocking(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._threads_pool, function, *args)

    @property
    def capabilities(self) -> dict[str, bool]:
        ready = [w.kinds for w in self.workers if w.ready.is_set()]
        return {"text": any(k.get("text") for k in ready), "edit": any(k.get("edit") for k in ready)}

    async def submit(self, prompt: str, images_png: list[bytes], params: dict[str, Any],
                     timeout_s: float) -> tuple[bytes, int, int, float]:
        """(PNG bytes, width, height, seconds). Raises QueueFull, TimeoutError or WorkerFailure."""
        future: asyncio.Future[tuple[bytes, int, int, float]] = asyncio.get_running_loop().create_future()
        job = Job(next(self._ids), prompt, images_png, params, future)
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFull from None
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            future.cancel()  # still queued: skipped; already running: the worker is killed and restarted
            if job.worker is not None:
                self.workers[job.worker].kill()
            raise

    def retry_after_s(self) -> int:
        """A guess for Retry-After: the queue ahead divided among the workers, at the mean latency."""
        mean = self.latency_sum / self.completed if self.completed else 5.0
        return max(1, int(mean * self.queue.qsize() / max(1, len(self.workers))))

    async def _lifecycle(self, worker: Worker) -> None:
        while True:
            await self._spawn(worker)
            await self._serve(worker)
            worker.ready.clear()
            worker.restarts += 1
            logger.warning("worker %d restarts (%d so far)", worker.index, worker.restarts)

    async def _spawn(self, worker: Worker) -> None:
        delay = 1.0
        while True:
            parent, child = self._context.Pipe()
            kwargs = {**self.pipeline_kwargs, "device": worker.device}
            process = self._context.Process(target=_worker_main, args=(child, kwargs, self._threads), daemon=True,
                                            name=f"gensearcher-worker-{worker.index}")
            process.start()
            child.close()
            try:
                message = await self._blocking(parent.recv)
            except (EOFError, OSError):
                message = ("failed", "the worker exited while loading")
            if message[0] == "ready":
                worker.process, worker.conn, worker.kinds = process, parent, message[1]
                worker.failures = 0
                worker.ready.set()
                return
            logger.error("worker %d could not load its pipelines: %s", worker.index, message[1])
            process.join(timeout=5)
            await asyncio.sleep(delay)
            delay = min(60.0, delay * 2)

    async def _serve(self, worker: Worker) -> None:
        """Run jobs on this worker until it dies or fails too often."""
        assert worker.conn is not None and worker.process is not None
        death = asyncio.ensure_future(self._blocking(worker.process.join))
        try:
            while True:
                getter = asyncio.ensure_future(self.queue.get())
                await asyncio.wait({getter, death}, return_when=asyncio.FIRST_COMPLETED)
                if death.done():  # died while idle (killed, out of memory): nothing was lost
                    if getter.done():
                        self.queue.put_nowait(getter.result())
                    getter.cancel()
                    return
                job = getter.result()
                if job.future.done():
                    continue  # timed out while queued
                if not worker.kinds.get("edit" if job.images_png else "text"):
                    job.future.set_exception(NoCapableWorker())
                    continue
                if not await self._run(worker, job):
                    return
        finally:
            worker.kill()
            death.cancel()

    async def _run(self, worker: Worker, job: Job) -> bool:
        """Run one job. Returns False when the worker must be restarted."""
        assert worker.conn is not None
        job.worker, job.attempts = worker.index, job.attempts + 1
        worker.job = job
        try:
            reply = await self._blocking(_exchange, worker.conn, job)
        except (EOFError, OSError):
            worker.job, job.worker = None, None
            worker.total_failures += 1
            if not job.future.done():
                if job.attempts < 2:
                    self.queue.put_nowait(job)  # the worker died under it: one more try elsewhere
                else:
                    self.failed += 1
                    job.future.set_exception(WorkerFailure(f"worker {worker.index} stopped while generating"))
            return False
        worker.job = None
        if reply[1] == "ok":
            _, _, data, width, height, seconds = reply
            worker.failures = 0
            worker.served += 1
            self.completed += 1
            self.latency_sum += time.monotonic() - job.queued_at
            if not job.future.done():
                job.future.set_result((data, width, height, seconds))
            return True
        worker.failures += 1
        worker.total_failures += 1
        self.failed += 1
        if not job.future.done():
            job.future.set_exception(WorkerFailure(reply[2]))
        if worker.failures >= self.failure_threshold:
            logger.error("worker %d failed %d times in a row; reloading it", worker.index, worker.failures)
            return False
        return True


def _exchange(conn: Connection, job: Job) -> tuple[Any, ...]:
    conn.send((job.id, job.prompt, job.images_png, job.params))
    while True:
        reply = conn.recv()
        if reply[0] == job.id:
            return reply
        logger.error("dropping a reply for job %s while waiting for job %s", reply[0], job.id)
