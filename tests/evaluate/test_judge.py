"""The judge against a scripted OpenAI-compatible judge server: repairs, refusals, 429s, timeouts, cache."""

import json
import re
from collections import Counter

import pytest

from gensearcher.config import JudgeConfig
from gensearcher.judge import Judge, JudgeError
from gensearcher.testing import Reply, ScriptedPolicyServer
from gensearcher.web import WebCache
from tests.conftest import make_image

GOOD = {"rationale": "Constraints: a cup. It is right.", "faithfulness": 1, "visual_correctness": 0.5,
        "text_accuracy": 0, "text_accuracy_na": True, "aesthetics": 1}


class ScriptedJudge:
    """Answers by the item id in the request; counts calls per item."""

    def __init__(self):
        self.calls = Counter()

    def __call__(self, body):
        text = body["messages"][-1]["content"][-1]["text"]
        item = re.match(r"Item (\S+)\.", text).group(1)
        self.calls[item] += 1
        n = self.calls[item]
        assert body["temperature"] == 0.0 and len([p for p in body["messages"][-1]["content"] if p["type"] == "image_url"]) == 2
        if item == "fenced":
            return "```json\n" + json.dumps(GOOD)[:-1] + ",}\n```"
        if item == "refuses" or (item == "refuses-once" and n == 1):
            return "I'm sorry, but I can't help with that."
        if item == "busy" and n == 1:
            return Reply(status=429, error="rate limited", retry_after=0)
        if item == "slow":
            return Reply(text=json.dumps(GOOD), delay_s=3)
        return json.dumps(GOOD)


@pytest.fixture
def images(tmp_path):
    return make_image(tmp_path / "gen.png"), make_image(tmp_path / "gt.png", color=(0, 0, 255))


async def judge_for(server, tmp_path, **config):
    return Judge(JudgeConfig(base_url=server.base_url, model="judge", max_retries=2, **config),
                 cache=WebCache(tmp_path / "cache"), image_dir=tmp_path / "judge-images")


async def test_scores_are_parsed_snapped_and_the_raw_answer_kept(tmp_path, images):
    script = ScriptedJudge()
    with ScriptedPolicyServer(script) as server:
        judge = await judge_for(server, tmp_path)
        score = await judge.knowgen("plain", "A cup", *images)
        fenced = await judge.knowgen("fenced", "A cup", *images)
        await judge.aclose()
    assert score.scores == {"faithfulness": 1.0, "visual_correctness": 0.5, "text_accuracy": 0.5, "aesthetics": 1.0}
    assert score.text_accuracy_na and score.overall == round(0.1 + 0.2 + 0.2 + 0.1, 4)
    assert score.raw == json.dumps(GOOD) and fenced.scores == score.scores and fenced.raw.startswith("```json")
    assert server.requests[0]["messages"][0]["content"].startswith("You grade one generated picture")


async def test_refusals_are_retried_then_reported(tmp_path, images):
    script = ScriptedJudge()
    with ScriptedPolicyServer(script) as server:
        judge = await judge_for(server, tmp_path, parse_retries=1)
        recovered = await judge.knowgen("refuses-once", "A cup", *images)
        with pytest.raises(JudgeError) as info:
            await judge.knowgen("refuses", "A cup", *images)
        await judge.aclose()
    assert recovered.overall > 0 and script.calls["refuses-once"] == 2
    assert script.calls["refuses"] == 2 and "could not be used" in str(info.value) and "sorry" in info.value.raw


async def test_rate_limits_and_timeouts(tmp_path, images):
    script = ScriptedJudge()
    with ScriptedPolicyServer(script) as server:
        judge = await judge_for(server, tmp_path, request_timeout_s=1, deadline_s=2.5)
        assert (await judge.knowgen("busy", "A cup", *images)).overall > 0
        with pytest.raises(JudgeError, match="judge endpoint failed"):
            await judge.knowgen("slow", "A cup", *images)
        await judge.aclose()
    assert script.calls["busy"] == 2


async def test_same_inputs_are_never_judged_twice(tmp_path, images):
    script = ScriptedJudge()
    with ScriptedPolicyServer(script) as server:
        first = await judge_for(server, tmp_path)
        await first.knowgen("plain", "A cup", *images)
        await first.aclose()
        again = await judge_for(server, tmp_path)  # a new process would see the same cache folder
        score = await again.knowgen("plain", "A cup", *images)
        other = await again.knowgen("plain", "A different cup", *images)
        await again.aclose()
    assert script.calls["plain"] == 2 and again.cache_hits == 1 and again.calls == 1
    assert score.overall == other.overall


async def test_wise_and_text_judges(tmp_path, images):
    def answer(body):
        system = body["messages"][0]["content"]
        return '{"score": 1, "rationale": "ok"}' if "judging guide" in system else '{"score": 0.7, "rationale": "Constraints: x"}'

    with ScriptedPolicyServer(answer) as server:
        judge = await judge_for(server, tmp_path)
        verified = await judge.wise("verified", "A candle in space", "No flame: a sphere of light at most.", images[0])
        text = await judge.text_reward("A cup", "a silver cup", [{"img_id": "IMG_001", "title": "cup", "note": "shape"}],
                                       images[1])
        await judge.aclose()
    assert verified.overall == 1.0 and text.overall == 0.75
    assert "No flame" in server.requests[0]["messages"][-1]["content"][-1]["text"]


async def test_a_picture_rewritten_under_its_name_is_judged_anew(tmp_path):
    """A retried rollout's image is saved again under the same name. File timestamps tick coarsely (a
    jiffy) and tools such as rsync or cp -p keep them, so the new picture may match the old one's mtime
    and size; the judge must still see (and score) the new picture, not a memo or a cached verdict."""
    import os

    from PIL import Image

    generated, ground_truth = tmp_path / "gen.png", make_image(tmp_path / "gt.png", color=(0, 0, 255))
    Image.new("RGB", (64, 64), (255, 0, 0)).save(generated, compress_level=0)  # stored: size fixed by the pixels
    with ScriptedPolicyServer(ScriptedJudge()) as server:
        judge = await judge_for(server, tmp_path)
        await judge.knowgen("retried", "A cup", generated, ground_truth)
        before = generated.stat()
        Image.new("RGB", (64, 64), (0, 255, 0)).save(generated, compress_level=0)
        os.utime(generated, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert generated.stat().st_size == before.st_size
        await judge.knowgen("retried", "A cup", generated, ground_truth)
        await judge.aclose()
    assert len(server.requests) == 2
    first, second = (next(p["image_url"]["url"] for p in r["messages"][-1]["content"] if p["type"] == "image_url")
                     for r in server.requests)
    assert first != second
