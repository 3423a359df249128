"""Bookkeeping cost per task of a research batch at 1,000 / 10,000 / 50,000 tasks (an instant policy).

The policy answers at once (one search round, then the answer) and the tool returns at once, so what is
measured is everything around the model: task reading, the loop, a checkpoint after the round, the
trajectory file, results.json. Target: ms per task at 50,000 within 1.2x of that at 1,000, and under 3 ms.
Prints JSON.

    python benchmarks/batch_bookkeeping.py [--sizes 1000,10000,50000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gensearcher.agent import Agent, BatchRunner, load_tasks
from gensearcher.config import AgentConfig
from gensearcher.messages import Message
from gensearcher.policy.base import PolicyResponse, TokenUsage
from gensearcher.tools import Toolbox, ToolResult

ANSWER = ('<think>Enough.</think><answer>{"gen_prompt": "The lake podium at dusk.", "reference_images": []}'
          "</answer>")
CALL = '<think>Look it up.</think><tool_call>{"name": "search", "arguments": {"queries": ["podium"]}}</tool_call>'


class InstantPolicy:
    """Answers at once: a search call first, then the answer."""

    async def complete(self, messages: Sequence[Message], *, max_tokens: int) -> PolicyResponse:
        text = CALL if len(messages) < 3 else ANSWER
        return PolicyResponse(text=text, finish_reason="stop", usage=TokenUsage(prompt_tokens=50, completion_tokens=20))

    def describe(self) -> dict[str, Any]:
        return {"backend": "instant"}

    async def aclose(self) -> None:
        pass


async def search(args: Any) -> ToolResult:
    return ToolResult(text="[The podium](https://example.org/p) silver, by the lake.")


async def one_size(size: int, concurrency: int, folder: Path) -> dict[str, Any]:
    tasks_file = folder / f"tasks-{size}.jsonl"
    tasks_file.write_text("".join(json.dumps({"id": f"t{i}", "prompt": f"task {i}", "meta": {"category": "sports"}}) + "\n"
                                  for i in range(size)))
    agent = Agent(InstantPolicy(), Toolbox({"search": search}, timeout_s=5), config=AgentConfig(date="2026-12-01"),
                  max_refs=5, max_pixels=160_000, image_dir=folder / "policy")
    started = time.perf_counter()
    cpu = time.process_time()
    tasks = load_tasks(tasks_file)
    summary = await BatchRunner(agent, folder / f"run-{size}", concurrency=concurrency).run(tasks)
    wall = time.perf_counter() - started
    assert summary.terminations == {"answer": size}, summary
    rows = json.loads((folder / f"run-{size}" / "results.json").read_text())
    assert len(rows) == size
    return {"tasks": size, "wall_s": round(wall, 2), "ms_per_task": round(1000 * wall / size, 3),
            "cpu_ms_per_task": round(1000 * (time.process_time() - cpu) / size, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            results.append(asyncio.run(one_size(size, args.concurrency, Path(tmp))))
    first, last = results[0], results[-1]
    ratio = last["ms_per_task"] / first["ms_per_task"]
    print(json.dumps({"benchmark": "batch_bookkeeping", "concurrency": args.concurrency, "results": results,
                      "ratio_largest_to_smallest": round(ratio, 3),
                      "target": "ratio <= 1.2 and ms_per_task < 3 at the largest size",
                      "met": ratio <= 1.2 and last["ms_per_task"] < 3,
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}, indent=2))


if __name__ == "__main__":
    main()
