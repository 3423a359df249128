"""A batch recorded against a live (local) web, exported, imported elsewhere, and replayed with the
network switched off reproduces the same trajectories."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from gensearcher.agent import Agent, BatchRunner, load_tasks
from gensearcher.agent.batch import run_cache_keys
from gensearcher.config import load_settings
from gensearcher.policy import build_policy
from gensearcher.testing import ScriptedPolicyServer
from gensearcher.testing.local_web import LocalWeb
from gensearcher.tools import build_tools
from tests.helpers import answer, call


def script(prompts):
    return {p: [call("search", queries=["tour winner"], top_k=2), call("image_search", query="tour", top_k=3),
                call("browse", url="{web}/page/trophy.html", query="what does the base say"),
                answer("The winner from the first reference image.", "IMG_001", "IMG_003")] for p in prompts}


def summary(body):
    return "The base is black marble engraved TOUR 2026."


async def run_batch(settings, server, tasks, out):
    tools = build_tools(settings, output_dir=out)
    policy = build_policy(settings)
    agent = Agent(policy, tools.toolbox, config=settings.agent, max_refs=5, max_pixels=160_000,
                  image_dir=out / "images" / "policy", record={})
    try:
        await BatchRunner(agent, out, concurrency=3).run(tasks)
    finally:
        await policy.aclose()
        await tools.aclose()
    return tools


def comparable(out):
    """Trajectories without timings and local paths (which name the output folder)."""
    rows = []
    for path in sorted((out / "trajectories").glob("*.json")):
        data = json.loads(path.read_text())
        text = json.dumps({"messages": data["messages"], "answer": data["answer"], "termination": data["termination"],
                           "tools": [(s["tool_call"] or {}).get("result_text") for s in data["steps"]]})
        rows.append(re.sub(r'/[^"\s]*?/(images|policy)/[0-9a-f/]+\.jpg', "<img>", text))
    return rows


async def test_replay_from_an_imported_cache_makes_no_network_call(tmp_path, monkeypatch):
    prompts = [f"poster {i}" for i in range(4)]
    (tmp_path / "tasks.json").write_text(json.dumps(prompts))
    tasks = load_tasks(tmp_path / "tasks.json")
    with LocalWeb() as web, ScriptedPolicyServer(summary) as summariser:
        turns = {p: [t.replace("{web}", web.url) for t in turns] for p, turns in script(prompts).items()}
        with ScriptedPolicyServer(turns) as policy_server:
            common = {
                "policy": {"base_url": policy_server.base_url, "model": "m", "temperature": 0.0},
                "agent": {"date": "2026-11-27"},
                "search": {"backend": "serper", "serper_api_key": "test-key", "text_search_url": web.url + "/serper/search",
                           "image_search_url": web.url + "/serper/images", "summary_base_url": summariser.base_url,
                           "summary_model": "s"},
                "fetch": {"allowed_networks": ["127.0.0.1/32"]},
            }
            recorded = load_settings({**common, "cache": {"dir": str(tmp_path / "cache-a")}})
            await run_batch(recorded, policy_server, tasks, tmp_path / "live")
            live_hits = sum(web.hits.values())
            summaries = len(summariser.requests)
            # Export exactly what the run used, through the CLI, and import it into a fresh cache.
            env = {"PATH": "", "GENSEARCHER_CACHE_DIR": str(tmp_path / "cache-a")}
            exported = subprocess.run([sys.executable, "-m", "gensearcher", "cache", "export", str(tmp_path / "frozen.tar"),
                                       "--run", str(tmp_path / "live")], capture_output=True, text=True, env=env, cwd=tmp_path)
            assert exported.returncode == 0, exported.stderr
            env["GENSEARCHER_CACHE_DIR"] = str(tmp_path / "cache-b")
            imported = subprocess.run([sys.executable, "-m", "gensearcher", "cache", "import", str(tmp_path / "frozen.tar")],
                                      capture_output=True, text=True, env=env, cwd=tmp_path)
            assert imported.returncode == 0 and "imported" in imported.stdout
    # The web and the summariser are gone now: only the policy server answers.
    with ScriptedPolicyServer(turns) as policy_server:
        replay = load_settings({**common, "policy": {**common["policy"], "base_url": policy_server.base_url},
                                "cache": {"dir": str(tmp_path / "cache-b"), "mode": "replay"}})
        tools = await run_batch(replay, policy_server, tasks, tmp_path / "replayed")
    assert tools.web.fetcher is None
    assert live_hits > 0 and 1 <= summaries <= 4  # concurrent trajectories may share a cached summary
    assert comparable(tmp_path / "replayed") == comparable(tmp_path / "live")
    rows = json.loads((tmp_path / "replayed" / "results.json").read_text())
    assert [row["termination"] for row in rows] == ["answer"] * 4
    assert len(run_cache_keys(tmp_path / "live")) >= 5
