"""Trajectory files as the item page shows them: rounds, the images each round brought, the answer.

`read_trajectory` is the viewer's one way to load a trajectory (`agent.trajectory.load_trajectory`, which
makes the run-relative image paths absolute, with errors as UserError). `rounds` turns the steps into what
a reader wants to see of each round.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gensearcher.agent.trajectory import Trajectory, load_trajectory
from gensearcher.errors import UserError

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def read_trajectory(path: Path) -> Trajectory:
    """A trajectory file with every image path absolute. Raises UserError naming the file when unreadable."""
    try:
        return load_trajectory(path)
    except (OSError, ValidationError, ValueError) as exc:
        first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise UserError(f"cannot read trajectory {path}: {first}") from None


def research_row(trajectory: Trajectory, path: Path) -> dict[str, Any]:
    """A results.json row for an item known only by its trajectory file."""
    from gensearcher.agent.batch import result_row

    row = result_row(trajectory, str(path)).to_json()
    row["id"] = trajectory.task.id if trajectory.task.id is not None else path.stem
    return row


class Seen(BaseModel):
    img_id: str
    path: str
    url: str | None = None
    title: str | None = None


class Round(BaseModel):
    """One round of a trajectory as the item page shows it."""

    number: int
    final: bool
    thinking: str
    text: str = ""
    action: str
    tool: str | None = None
    arguments: str = ""
    result: str = ""
    error: str | None = None
    problem: str | None = None
    images: list[Seen] = []
    tool_s: float | None = None
    latency_s: float
    attempts: int
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cache_keys: int = 0


def rounds(trajectory: Trajectory) -> list[Round]:
    by_id = {image.img_id: image for image in trajectory.images}
    shown = []
    for step in trajectory.steps:
        thinking = "\n".join(part.strip() for part in _THINK.findall(step.response))
        rest = _THINK.sub("", step.response).strip()
        call = step.tool_call
        images = [Seen(img_id=i, path=by_id[i].local_path, url=by_id[i].url, title=by_id[i].title)
                  for i in (call.image_ids if call else []) if i in by_id]
        shown.append(Round(
            number=step.round, final=step.final_round, thinking=thinking, text=rest, action=step.action,
            tool=call.name if call else None,
            arguments=json.dumps(call.arguments, ensure_ascii=False, indent=1) if call else "",
            result=call.result_text if call else "", error=call.error if call else None, problem=step.problem,
            images=images, tool_s=call.duration_s if call else None, latency_s=step.latency_s,
            attempts=step.attempts, finish_reason=step.finish_reason, prompt_tokens=step.usage.prompt_tokens,
            completion_tokens=step.usage.completion_tokens, cache_keys=len(call.cache_keys) if call else 0))
    return shown
