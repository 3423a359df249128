"""`gensearcher generate`: render every research result, concurrently and resumably.

Input: a research `results.json` (ours or the reference system's agent output), read as `ResearchRow`s.
Output: `DIR/results.json` of `GenerationRow`s (the reference generation-output format plus what we add:
dropped references, parameters, backend, seconds) and `DIR/images/<name>.png`, one file per id. Relative
paths in the input are resolved against the input file's folder, then the working folder, then the folders
above the input file (the reference writes them relative to the folder it ran in); every path written is
absolute. A reference that exists nowhere is an error for its item, naming the places tried.

Modes: `grounded` (gen_prompt + its reference images; never a silent fall-back), `text_only` (gen_prompt,
no images), `original` (the original prompt alone: the "generator alone" baseline row).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from gensearcher.agent.batch import item_filename
from gensearcher.data import (
    GenerationRow,
    PathNotFound,
    ResearchRow,
    ThrottledWriter,
    json_array,
    read_records,
)
from gensearcher.data.io import dumps, resolve_or_keep, resolve_path, run_batch, unique_ids
from gensearcher.errors import GenerationError, UserError
from gensearcher.generate.base import GenerationRequest, Generator

logger = logging.getLogger(__name__)
Mode = Literal["grounded", "text_only", "original"]


def load_research_results(path: Path) -> list[ResearchRow]:
    """The research rows of a results file (JSON or JSONL), unfinished reference rows left out."""
    if not path.is_file():
        raise UserError(f"research results not found: {path}")
    rows = read_records(path, ResearchRow, skip=lambda row: bool(row.get("pending")))
    unique_ids(rows, path)
    return rows


def plan_request(row: ResearchRow, mode: Mode, source: Path, max_refs: int,
                 defaults: dict[str, Any] | None = None) -> tuple[GenerationRequest, list[str]]:
    """The request for one research row and the reference paths it uses. Raises GenerationError.

    `source` is the research file the row came from (its paths are relative to it); `defaults` are
    request fields from the configuration (steps, width, height, seed).
    """
    defaults = {key: value for key, value in (defaults or {}).items() if value is not None}
    if mode == "original":
        return GenerationRequest(prompt=row.prompt, **defaults), []
    gen_prompt = row.gen_prompt.strip()
    if not gen_prompt:
        raise GenerationError(f"no grounded prompt (research ended as {row.termination or 'unknown'!r})")
    if mode == "text_only":
        return GenerationRequest(prompt=gen_prompt, **defaults), []
    paths = []
    for ref in row.reference_images[:max_refs]:
        if not ref.local_path:
            raise GenerationError(f"reference image {ref.img_id} has no local_path")
        try:
            paths.append(str(resolve_path(ref.local_path, source, what=f"reference image {ref.img_id}")))
        except PathNotFound as exc:
            raise GenerationError(str(exc)) from None
    return GenerationRequest(prompt=gen_prompt, reference_images=paths, **defaults), paths


class GenerateSummary(BaseModel):
    """What a generation batch did."""

    total: int
    skipped: int
    succeeded: int
    failed: int
    results_path: str


class GenerateRunner:
    """Render research rows with one generator, at most `concurrency` at once, resumable by `success`."""

    def __init__(self, generator: Generator, out_dir: Path, *, mode: Mode = "grounded", concurrency: int = 1,
                 resume: bool = False, max_refs: int = 5, defaults: dict[str, Any] | None = None,
                 on_item: Callable[[GenerationRow, int, int], None] | None = None):
        if concurrency < 1:
            raise UserError("concurrency must be at least 1")
        self.generator = generator
        self.out_dir = out_dir
        self.mode = mode
        self.concurrency = concurrency
        self.resume = resume
        self.max_refs = max_refs
        self.defaults = defaults or {}
        self.on_item = on_item

    async def run(self, rows: list[ResearchRow], source: Path) -> GenerateSummary:
        results_path = self.out_dir / "results.json"
        unique_ids(rows, source)
        order = [str(row.id) for row in rows]
        writer = ThrottledWriter(results_path, order, json_array)
        done = await asyncio.to_thread(self._finished, results_path)
        for key, finished_row in done.items():
            writer.put(key, dumps(finished_row))
        for row in rows:
            if str(row.id) not in done:
                writer.put(str(row.id), dumps({"id": row.id, "pending": True}))
        todo = [row for row in rows if str(row.id) not in done]
        await asyncio.to_thread((self.out_dir / "images").mkdir, parents=True, exist_ok=True)
        await writer.flush()

        await run_batch(todo, lambda row: self._render(row, source), writer, concurrency=self.concurrency,
                        record=lambda result: done.__setitem__(str(result.id), result), on_item=self.on_item,
                        finished=len(done), total=len(rows))
        succeeded = sum(1 for row in done.values() if row.success)
        return GenerateSummary(total=len(rows), skipped=len(rows) - len(todo), succeeded=succeeded,
                               failed=len(done) - succeeded, results_path=str(results_path))

    def _finished(self, results_path: Path) -> dict[str, GenerationRow]:
        """The rows of an earlier run whose image is on disk (with --resume); an error without it."""
        if not results_path.exists():
            return {}
        if not self.resume:
            raise UserError(f"{results_path} exists: resume that run (--resume) or choose another output folder")
        done = {}
        for previous in read_records(results_path, GenerationRow, skip=lambda row: bool(row.get("pending"))):
            if previous.success and previous.output_path and Path(previous.output_path).is_file():
                done[str(previous.id)] = previous
        return done

    async def _render(self, row: ResearchRow, source: Path) -> GenerationRow:
        known = set(GenerationRow.model_fields)
        carried = {key: value for key, value in (row.model_extra or {}).items() if key not in known}
        if row.trajectory:  # the way back to the research (relative to the research file)
            carried["trajectory"] = str(resolve_or_keep(row.trajectory, source))
        out = GenerationRow(**carried, id=row.id, prompt=row.prompt, gen_prompt=row.gen_prompt, meta=row.meta,
                            gt_image=resolve_or_keep(row.gt_image, source))
        try:
            request, paths = plan_request(row, self.mode, source, self.max_refs, self.defaults)
            out.used_prompt, out.used_images = request.prompt, paths
            result = await self.generator.generate(request)
        except GenerationError as exc:
            out.success, out.error, out.output_path = False, str(exc), None
            return out
        except Exception as exc:  # a backend bug costs this item only
            logger.exception("generation of %r crashed", row.id)
            out.success, out.error, out.output_path = False, f"internal error: {type(exc).__name__}: {exc}", None
            return out
        path = await asyncio.to_thread(result.save, self.out_dir / "images" / item_filename(row.id, ".png"))
        out.used_images = result.used_images
        out.output_path = str(path.resolve())
        out.success, out.error = True, None
        out.dropped_references = result.dropped_references
        out.parameters, out.backend, out.model = result.parameters, result.backend, result.model
        out.seconds = round(result.seconds, 3)
        return out
