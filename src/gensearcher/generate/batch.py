"""`gensearcher generate`: render every research result, concurrently and resumably.

Input: a research `results.json` (ours or the reference system's agent output). Output: `DIR/results.json`
in the reference system's generation-output format (`id, prompt, gen_prompt, meta, gt_image, used_prompt,
used_images, output_path, success, error`, plus what we add: dropped references, parameters, backend,
seconds) and `DIR/images/<id>.png`. Paths in the input are resolved against the input file's folder,
and every path written is absolute.

Modes: `grounded` (gen_prompt + its reference images; a missing reference is an error for the item, never
a silent fall-back), `text_only` (gen_prompt, no images), `original` (the original prompt alone: the
"generator alone" baseline row).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from gensearcher._concurrency import gather_or_cancel
from gensearcher._files import write_atomic
from gensearcher.agent.batch import trajectory_filename
from gensearcher.errors import GenerationError, UserError
from gensearcher.generate.base import GenerationRequest, Generator

logger = logging.getLogger(__name__)
Mode = Literal["grounded", "text_only", "original"]


def load_research_results(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"research results not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        rows = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" else json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(rows, list):
        raise UserError(f"{path} must hold a list of research results")
    rows = [row for row in rows if isinstance(row, dict) and not row.get("pending")]
    for index, row in enumerate(rows):
        if "prompt" not in row:
            raise UserError(f"{path}: row {index} has no 'prompt'")
        row.setdefault("id", index)
    return rows


def plan_request(row: dict[str, Any], mode: Mode, base: Path, max_refs: int,
                 defaults: dict[str, Any] | None = None) -> tuple[GenerationRequest, list[str]]:
    """The request for one research row and the reference paths it uses. Raises GenerationError.

    `defaults` are request fields from the configuration (steps, width, height, seed).
    """
    defaults = {key: value for key, value in (defaults or {}).items() if value is not None}
    if mode == "original":
        return GenerationRequest(prompt=row["prompt"], **defaults), []
    gen_prompt = str(row.get("gen_prompt") or "").strip()
    if not gen_prompt:
        raise GenerationError(f"no grounded prompt (research ended as {row.get('termination', 'unknown')!r})")
    if mode == "text_only":
        return GenerationRequest(prompt=gen_prompt, **defaults), []
    paths = []
    for ref in (row.get("reference_images") or [])[:max_refs]:
        local = ref.get("local_path") if isinstance(ref, dict) else None
        resolved = _resolve(local, base) if local else None
        if resolved is None or not resolved.is_file():
            raise GenerationError(f"reference image {ref.get('img_id', '?') if isinstance(ref, dict) else ref} is missing: {local}")
        paths.append(str(resolved))
    return GenerationRequest(prompt=gen_prompt, reference_images=paths, **defaults), paths


def _resolve(path: str, base: Path) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else (base / candidate).resolve()


class GenerateSummary(BaseModel):
    total: int
    skipped: int
    succeeded: int
    failed: int
    results_path: str


class GenerateRunner:
    def __init__(self, generator: Generator, out_dir: Path, *, mode: Mode = "grounded", concurrency: int = 1,
                 resume: bool = False, max_refs: int = 5, defaults: dict[str, Any] | None = None,
                 on_item: Callable[[dict[str, Any], int, int], None] | None = None):
        if concurrency < 1:
            raise UserError("--concurrency must be at least 1")
        self.generator = generator
        self.out_dir = out_dir
        self.mode = mode
        self.concurrency = concurrency
        self.resume = resume
        self.max_refs = max_refs
        self.defaults = defaults or {}
        self.on_item = on_item

    async def run(self, rows: list[dict[str, Any]], source: Path) -> GenerateSummary:
        results_path = self.out_dir / "results.json"
        previous: dict[str, dict[str, Any]] = {}
        if results_path.exists():
            if not self.resume:
                raise UserError(f"{results_path} exists: pass --resume to continue, or choose another --out")
            previous = {str(r["id"]): r for r in json.loads(results_path.read_text(encoding="utf-8")) if isinstance(r, dict)}
        order = [(str(row["id"]), row["id"]) for row in rows]
        if len({key for key, _ in order}) != len(order):
            raise UserError(f"{source}: duplicate ids")
        done: dict[str, dict[str, Any]] = {}
        for key, row in previous.items():
            if row.get("success") and Path(str(row.get("output_path"))).is_file():
                done[key] = row
        todo = [row for row in rows if str(row["id"]) not in done]
        lock, semaphore, finished = asyncio.Lock(), asyncio.Semaphore(self.concurrency), len(done)
        (self.out_dir / "images").mkdir(parents=True, exist_ok=True)

        async def one(row: dict[str, Any]) -> None:
            nonlocal finished
            async with semaphore:
                result = await self._render(row, source.parent)
            async with lock:
                done[str(row["id"])] = result
                self._write(results_path, order, done)
                finished += 1
                if self.on_item:
                    self.on_item(result, finished, len(rows))

        self._write(results_path, order, done)
        await gather_or_cancel(one(row) for row in todo)
        succeeded = sum(1 for row in done.values() if row.get("success"))
        return GenerateSummary(total=len(rows), skipped=len(rows) - len(todo), succeeded=succeeded,
                               failed=len(done) - succeeded, results_path=str(results_path))

    async def _render(self, row: dict[str, Any], base: Path) -> dict[str, Any]:
        out = {key: row.get(key) for key in ("id", "prompt", "gen_prompt", "meta")}
        gt = row.get("gt_image") or row.get("gen_image")
        out["gt_image"] = str(_resolve(gt, base)) if isinstance(gt, str) and gt else gt
        try:
            request, paths = plan_request(row, self.mode, base, self.max_refs, self.defaults)
            out.update(used_prompt=request.prompt, used_images=paths)
            result = await self.generator.generate(request)
        except GenerationError as exc:
            return {**out, "success": False, "error": str(exc), "output_path": None}
        except Exception as exc:  # a backend bug costs this item only
            logger.exception("generation of %r crashed", row.get("id"))
            return {**out, "success": False, "error": f"internal error: {type(exc).__name__}: {exc}", "output_path": None}
        path = self.out_dir / "images" / trajectory_filename(row["id"]).removesuffix(".json")
        path = result.save(path.with_suffix(".png")).resolve()
        return {**out, "used_images": result.used_images, "output_path": str(path), "success": True, "error": None,
                "dropped_references": [d.model_dump() for d in result.dropped_references],
                "parameters": result.parameters, "backend": result.backend, "model": result.model,
                "seconds": round(result.seconds, 3)}

    @staticmethod
    def _write(path: Path, order: list[tuple[str, Any]], done: dict[str, dict[str, Any]]) -> None:
        rows = [done.get(key, {"id": original, "pending": True}) for key, original in order]
        write_atomic(path, json.dumps(rows, ensure_ascii=False, indent=1).encode("utf-8"))
