"""One prompt end to end: research, then generation (`gensearcher run`).

    OUT/trajectory.json   the research
    OUT/image.png         the image (when the research answered and the generator succeeded)
    OUT/run.json          a `RunRecord` tying them together
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from gensearcher._files import write_atomic
from gensearcher.agent.factory import build_agent
from gensearcher.agent.trajectory import Termination, save_trajectory
from gensearcher.config import Settings
from gensearcher.data import ReferenceImage, Task
from gensearcher.errors import GenerationError
from gensearcher.generate import Generator, build_generator
from gensearcher.generate.base import DroppedReference, answer_request
from gensearcher.policy.base import PolicyBackend

__all__ = ["GenerationSummary", "RunRecord", "run_one"]


class GenerationSummary(BaseModel):
    """What the generator did: a `GenerationResult` without the image bytes (those are in image.png)."""

    width: int = Field(description="Width of the image in pixels.")
    height: int = Field(description="Height of the image in pixels.")
    backend: str = Field(description="The generator backend that made it.")
    model: str | None = Field(None, description="The model or server that made it.")
    used_images: list[str] = Field([], description="Reference images the generator received, in order.")
    dropped_references: list[DroppedReference] = Field([], description="References it could not take; why.")
    parameters: dict[str, Any] = Field({}, description="The parameters it used (steps, seed, ...).")
    seconds: float = Field(0.0, description="Time of the generation, retries included.")


class RunRecord(BaseModel):
    """`run.json`: one prompt's research and generation. A failed generation is recorded, not raised."""

    prompt: str = Field(description="The image request as given.")
    termination: Termination = Field(description="How the research ended ('answer' when it answered).")
    trajectory: str = Field(description="Absolute path of trajectory.json.")
    image: str | None = Field(None, description="Absolute path of image.png; None when no image was made.")
    gen_prompt: str | None = Field(None, description="The grounded prompt the research wrote.")
    reference_images: list[ReferenceImage] = Field([], description="The answer's references, in order.")
    generation: GenerationSummary | None = Field(None, description="What the generator did.")
    error: str | None = Field(None, description="Why there is no image, when there is none.")


async def run_one(settings: Settings, prompt: str, out_dir: Path, *, system_prompt_file: Path | None = None,
                  policy: PolicyBackend | None = None, generator: Generator | None = None) -> RunRecord:
    """Research `prompt`, render the answer, and write trajectory.json, image.png and run.json into `out_dir`.

    The generator is built (and so validated) before the research starts. An injected `policy` or
    `generator` belongs to the caller and is not closed.
    """
    backend = generator if generator is not None else build_generator(settings)
    try:
        async with build_agent(settings, out_dir, policy=policy,
                               system_prompt_file=system_prompt_file) as agent:
            trajectory = await agent.run(Task(id=0, prompt=prompt))
        path = out_dir / "trajectory.json"
        save_trajectory(trajectory, path)
        record = RunRecord(prompt=prompt, termination=trajectory.termination, trajectory=str(path.resolve()))
        answer = trajectory.answer
        if answer is None:
            record.error = f"the research ended without an answer ({trajectory.termination})"
        else:
            record.gen_prompt, record.reference_images = answer.gen_prompt, list(answer.reference_images)
            try:
                request = answer_request(settings.generator, answer.gen_prompt, answer.reference_images)
                result = await backend.generate(request)
            except GenerationError as exc:
                record.error = str(exc)
            else:
                record.image = str(result.save(out_dir / "image.png").resolve())
                record.generation = GenerationSummary.model_validate(result.model_dump(exclude={"image_png"}))
    finally:
        if generator is None:
            await backend.aclose()
    write_atomic(out_dir / "run.json", record.model_dump_json(indent=2).encode("utf-8"))
    return record

