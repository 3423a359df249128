"""Agent orchestration overhead: many concurrent trajectories against a slow policy and slow tools.

256 trajectories run at once, 9 rounds each (8 tool calls, then the answer), against a scripted
OpenAI-compatible server in its own process that answers in 200 ms, with a tool that takes 100 ms.
The critical path of one trajectory is 9 x 0.2 + 8 x 0.1 = 2.6 s; everything above it is overhead.

Prints JSON: wall time and its ratio to the critical path, our process's CPU per round, peak RSS.
Targets (issue 2): ratio <= 1.15, CPU < 2 ms per round, peak RSS < 600 MB.

On a 2-core machine the stand-in server shares the CPU with the agent, and its own request handling
lengthens each synchronised round. For scale the benchmark also times a bare aiohttp loop that sends the
same conversations with no agent at all (`bare_client_wall_s`): the gap between the two is ours.

    python benchmarks/agent_overhead.py [--trajectories 256] [--rounds 9]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from gensearcher.agent import Agent, Task
from gensearcher.config import AgentConfig, PolicyConfig
from gensearcher.policy.openai_chat import OpenAIChatPolicy
from gensearcher.tools import SearchArgs, Toolbox, ToolResult

POLICY_S, TOOL_S = 0.2, 0.1


def tool_call(i: int) -> str:
    return (f'<think>Round {i}: look up one more detail.</think>\n<tool_call>\n{{"name": "search", '
            f'"arguments": {{"queries": ["detail {i}"]}}}}\n</tool_call>')


ANSWER = '<think>Done.</think>\n<answer>{"gen_prompt": "A grounded prompt.", "reference_images": []}</answer>'


async def slow_search(args) -> ToolResult:  # type: ignore[no-untyped-def]
    await asyncio.sleep(TOOL_S)
    return ToolResult(text="\n".join(f"[Result {q}](https://example.org/{q}) a snippet of text" for q in args.queries))


async def bare_client(url: str, system: str, prompts: list[str], rounds: int) -> float:
    """The same conversations over plain aiohttp, with no agent: the floor set by server and machine."""
    observation = (await slow_search(SearchArgs(queries=["detail"]))).text

    async def one(session: aiohttp.ClientSession, prompt: str) -> None:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        for _ in range(rounds):
            async with session.post(url, json={"model": "scripted", "messages": messages, "max_tokens": 4096}) as response:
                reply = (await response.json())["choices"][0]["message"]["content"]
            messages.append({"role": "assistant", "content": reply})
            if "<answer>" not in reply:
                await asyncio.sleep(TOOL_S)
                messages.append({"role": "user", "content": f"<tool_response>\n{observation}\n</tool_response>"})

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=len(prompts))) as session:
        started = time.perf_counter()
        await asyncio.gather(*(one(session, prompt) for prompt in prompts))
        return time.perf_counter() - started


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of another process (Linux), to see whether the stand-in server was the limit."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as client:
        for _ in range(200):
            try:
                async with client.get(url + "/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("policy server did not start")


async def main(trajectories: int, rounds: int) -> dict[str, object]:
    prompts = [f"benchmark task {i}" for i in range(trajectories)]
    script = {p: [tool_call(i) for i in range(1, rounds)] + [ANSWER] for p in prompts}
    with tempfile.TemporaryDirectory() as tmp:
        script_path = Path(tmp) / "script.json"
        script_path.write_text(json.dumps(script))
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "gensearcher.testing", "--script",
                                   str(script_path), "--port", str(port), "--latency-s", str(POLICY_S)])
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_ready(base)
            policy = OpenAIChatPolicy(PolicyConfig(base_url=base + "/v1", model="scripted"), max_connections=trajectories)
            agent = Agent(policy, Toolbox({"search": slow_search}),
                          config=AgentConfig(max_llm_calls=rounds, date="2026-11-27"),
                          max_refs=5, max_pixels=160_000, image_dir=Path(tmp) / "img")
            await agent.run(Task(id="warm-up", prompt=prompts[0]))  # connections, imports
            server_cpu0 = _cpu_seconds(server.pid)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            results = await asyncio.gather(*(agent.run(Task(id=i, prompt=p)) for i, p in enumerate(prompts)))
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            server_cpu = _cpu_seconds(server.pid)
            bare_wall = await bare_client(base + "/v1/chat/completions", agent.system_prompt, prompts, rounds)
            await policy.aclose()
        finally:
            server.terminate()
            server.wait(timeout=10)
    total_rounds = sum(t.rounds for t in results)
    critical = rounds * POLICY_S + (rounds - 1) * TOOL_S
    return {
        "benchmark": "agent_overhead",
        "trajectories": trajectories,
        "rounds_per_trajectory": rounds,
        "terminations": sorted({t.termination for t in results}),
        "wall_s": round(wall, 3),
        "critical_path_s": round(critical, 3),
        "wall_over_critical_path": round(wall / critical, 3),
        "bare_client_wall_s": round(bare_wall, 3),
        "wall_over_bare_client": round(wall / bare_wall, 3),
        "cpu_ms_per_round": round(1000 * cpu / total_rounds, 3),
        "policy_server_cpu_s": round(server_cpu - server_cpu0, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "targets": {"wall_over_critical_path": 1.15, "cpu_ms_per_round": 2.0, "peak_rss_mb": 600},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=9)
    options = parser.parse_args()
    print(json.dumps(asyncio.run(main(options.trajectories, options.rounds)), indent=2))
