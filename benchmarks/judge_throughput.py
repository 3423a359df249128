"""Judging throughput and resume: 1,000 items against a local judge that answers in 500 ms, 32 in flight.

The ideal wall time is 1,000 x 0.5 / 32 = 15.6 s; target (issue 5): within 1.2x. Then a second run is killed
once half the items are judged and resumed: no item whose judgement came back is judged again. (Requests
in flight at the moment of the kill never returned an answer, so they are sent again; the output counts them.)

    python benchmarks/judge_throughput.py [--items 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

from gensearcher.config import JudgeConfig
from gensearcher.evaluate.runner import JudgeRunner
from gensearcher.judge.judge import Judge
from gensearcher.testing import ScriptedPolicyServer

LATENCY_S, CONCURRENCY = 0.5, 32
ANSWER = json.dumps({"rationale": "Constraints: x.", "faithfulness": 1, "visual_correctness": 0.5, "text_accuracy": 1,
                     "aesthetics": 0.5})


class Killed(Exception):
    pass


def rows(count: int, folder: Path) -> list[dict[str, object]]:
    from PIL import Image

    Image.new("RGB", (96, 64), (200, 20, 20)).save(folder / "gen.png")
    Image.new("RGB", (96, 64), (20, 20, 200)).save(folder / "gt.png")
    categories = ["sports", "film", "history", "anime"]
    return [{"id": i, "success": True, "prompt": f"prompt {i}", "meta": {"category": categories[i % 4]},
             "output_path": str(folder / "gen.png"), "gt_image": str(folder / "gt.png")} for i in range(count)]


def make_judge(server: ScriptedPolicyServer, folder: Path) -> Judge:
    from gensearcher.web import WebCache

    config = JudgeConfig(base_url=server.base_url, model="judge", concurrency=CONCURRENCY)
    return Judge(config, cache=WebCache(folder / "cache"), image_dir=folder / "judge-images")


async def main(count: int) -> dict[str, object]:
    per_item: Counter[str] = Counter()

    def script(body: dict) -> str:
        item = re.match(r"Item (\S+)\.", body["messages"][-1]["content"][-1]["text"]).group(1)
        per_item[item] += 1
        return ANSWER

    with tempfile.TemporaryDirectory() as tmp, ScriptedPolicyServer(script, latency_s=LATENCY_S, record=False) as server:
        folder = Path(tmp)
        items = rows(count, folder)
        source = folder / "results.json"
        source.write_text(json.dumps(items))

        judge = make_judge(server, folder / "a")
        started = time.perf_counter()
        await JudgeRunner(judge, "knowgen", concurrency=CONCURRENCY).run(items, source, folder / "a" / "results_eval.json")
        wall = time.perf_counter() - started
        await judge.aclose()

        per_item.clear()
        answered: set[str] = set()

        def kill_at_half(row: dict, done: int, total: int) -> None:
            answered.add(str(row["id"]))
            if done >= count // 2:
                raise Killed

        judge = make_judge(server, folder / "b")
        try:
            await JudgeRunner(judge, "knowgen", concurrency=CONCURRENCY, on_item=kill_at_half).run(
                items, source, folder / "b" / "results_eval.json")
        except Killed:
            pass
        await judge.aclose()
        sent_before = Counter(per_item)
        judge = make_judge(server, folder / "b")
        await JudgeRunner(judge, "knowgen", concurrency=CONCURRENCY).run(items, source, folder / "b" / "results_eval.json")
        await judge.aclose()
    repeated_answered = sum(1 for item in answered if per_item[item] > 1)
    in_flight_resent = sum(1 for item, n in sent_before.items() if item not in answered and per_item[item] > n)
    ideal = count * LATENCY_S / CONCURRENCY
    return {
        "benchmark": "judge_throughput",
        "items": count,
        "judge_latency_s": LATENCY_S,
        "concurrency": CONCURRENCY,
        "wall_s": round(wall, 2),
        "ideal_s": round(ideal, 2),
        "ratio": round(wall / ideal, 3),
        "target_ratio": 1.2,
        "killed_after": count // 2,
        "judgements_repeated_after_resume": repeated_answered,
        "in_flight_at_kill_resent": in_flight_resent,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    print(json.dumps(asyncio.run(main(parser.parse_args().items)), indent=2))
