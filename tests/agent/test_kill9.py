"""kill -9 during a research batch, again and again: finished rounds are never asked again.

Each trajectory is checkpointed after every round and resumed from its last one, so the policy calls of
the whole job exceed the calls the tasks need by at most the calls in flight at each kill, and a batch
killed more often than one trajectory takes still finishes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from gensearcher.testing import ScriptedPolicyServer
from tests.conftest import make_image
from tests.helpers import answer, call

TASKS = 20
CONCURRENCY = 4
LATENCY_S = 0.15


def test_kill_minus_nine_loses_only_the_rounds_in_flight(tmp_path):
    corpus = tmp_path / "corpus"
    make_image(corpus / "podium.png", size=(96, 96), color=(200, 200, 10))
    (corpus / "notes.md").write_text("# Notes\nThe podium by the lake is silver.\n")
    tasks = [{"id": i, "prompt": f"task {i}"} for i in range(TASKS)]
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    script = {f"task {i}": [call("image_search", query="podium"), call("search", queries=["podium lake"]),
                            answer("the podium in the first reference image", "IMG_001")] for i in range(TASKS)}
    with ScriptedPolicyServer(script, latency_s=LATENCY_S) as policy:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "GENSEARCHER_POLICY_BASE_URL": policy.base_url,
               "GENSEARCHER_POLICY_MODEL": "m", "GENSEARCHER_CACHE_DIR": str(tmp_path / "cache")}
        command = [sys.executable, "-m", "gensearcher", "research", "--input", "tasks.json", "--out", "run",
                   "--search-backend", "local", "--local-corpus", str(corpus), "--concurrency", str(CONCURRENCY),
                   "--resume", "--no-progress"]
        kills = 0
        for _ in range(6):
            seen = len(policy.requests)
            process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # Kill once this attempt has made a few calls: fewer rounds than one trajectory needs in all.
            deadline = time.monotonic() + 60
            while len(policy.requests) < seen + CONCURRENCY + 2 and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if process.poll() is not None:
                break
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
        final = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stderr
        calls = len(policy.requests)
    rows = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [row["termination"] for row in rows] == ["answer"] * TASKS
    assert kills >= 3
    needed = 3 * TASKS
    # Without checkpoints every kill would also lose the finished rounds of each trajectory in flight.
    assert needed <= calls <= needed + kills * CONCURRENCY, (calls, kills)
