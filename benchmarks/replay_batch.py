"""A 100-task batch replayed from the web cache: zero network connections, and its wall time.

First the batch runs against a local web (Serper-compatible search and image endpoints, pages) and fills
a cache; then it runs again in replay mode with the web server stopped. A scripted policy server drives
both runs (it is the model, not the web). Prints JSON.

    python benchmarks/replay_batch.py [--tasks 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from gensearcher.agent import Agent, BatchRunner, Task
from gensearcher.config import load_settings
from gensearcher.policy import build_policy
from gensearcher.testing import ScriptedPolicyServer
from gensearcher.testing.local_web import LocalWeb
from gensearcher.tools import build_tools


def turns(web_url: str) -> list[str]:
    def call(name: str, arguments: dict[str, object]) -> str:
        return f"<think>x</think><tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"

    answer = {"gen_prompt": "The subject of the first reference image.", "reference_images": [{"img_id": "IMG_001", "note": "n"}]}
    return [call("search", {"queries": ["tour winner", "trophy"]}), call("image_search", {"query": "tour", "top_k": 3}),
            call("browse", {"url": f"{web_url}/page/trophy.html", "query": "base"}),
            f"<answer>{json.dumps(answer)}</answer>"]


async def batch(settings, tasks: list[Task], out: Path) -> tuple[float, object]:
    tools = build_tools(settings, output_dir=out)
    policy = build_policy(settings)
    agent = Agent(policy, tools.toolbox, config=settings.agent, max_refs=5, max_pixels=160_000,
                  image_dir=out / "images" / "policy")
    started = time.perf_counter()
    try:
        summary = await BatchRunner(agent, out, concurrency=16).run(tasks)
    finally:
        await policy.aclose()
        await tools.aclose()
    return time.perf_counter() - started, summary


async def main(count: int) -> dict[str, object]:
    tasks = [Task(id=i, prompt=f"poster number {i}") for i in range(count)]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with LocalWeb() as web:
            script = {task.prompt: turns(web.url) for task in tasks}
            base = {"agent": {"date": "2026-11-27"}, "fetch": {"allowed_networks": ["127.0.0.1/32"]},
                    "search": {"backend": "serper", "summarise": False, "serper_api_key": "test-key",
                               "text_search_url": web.url + "/serper/search", "image_search_url": web.url + "/serper/images"}}
            with ScriptedPolicyServer(script, record=False) as policy:
                live_settings = load_settings({**base, "policy": {"base_url": policy.base_url, "model": "m"},
                                               "cache": {"dir": str(tmp / "cache")}})
                live_wall, _ = await batch(live_settings, tasks, tmp / "live")
            web_requests_live = sum(web.hits.values())
            # The web stays up: any request the replay made would show in its counters.
            with ScriptedPolicyServer(script, record=False) as policy:
                replay_settings = load_settings({**base, "policy": {"base_url": policy.base_url, "model": "m"},
                                                 "cache": {"dir": str(tmp / "cache"), "mode": "replay"}})
                replay_wall, summary = await batch(replay_settings, tasks, tmp / "replay")
            web_requests_replay = sum(web.hits.values()) - web_requests_live
    return {
        "benchmark": "replay_batch",
        "tasks": count,
        "live_wall_s": round(live_wall, 2),
        "live_web_requests": web_requests_live,
        "replay_wall_s": round(replay_wall, 2),
        "replay_web_requests": web_requests_replay,
        "replay_fetcher": "none (replay mode builds no fetcher)",
        "replay_terminations": summary.terminations,  # type: ignore[attr-defined]
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    print(json.dumps(asyncio.run(main(parser.parse_args().tasks)), indent=2))
