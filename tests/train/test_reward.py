"""The RL reward against real servers on 127.0.0.1: the OpenAI Images stand-in as the generator and a
scripted OpenAI-compatible judge. Policy failures score 0 without a call; infrastructure failures are
excluded (reward None); graded judgements give the hand-computed reward."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest
from PIL import Image

from gensearcher.agent.trajectory import Answer, Step, ToolCallRecord, Trajectory
from gensearcher.config import load_settings
from gensearcher.data import ReferenceImage, Task
from gensearcher.generate import build_generator
from gensearcher.judge import Judge
from gensearcher.messages import Message
from gensearcher.testing import Reply, ScriptedPolicyServer
from gensearcher.testing.image_apis import KEY, ImageApis
from gensearcher.train.reward import Rewarder, blend, image_name
from tests.conftest import make_image
from tests.helpers import answer, call

JUDGE_KEY = "sk-judge-0123456789abcdef"
PROMPT = "A poster of the winner of the 2026 city marathon holding the trophy"
GEN_PROMPT = "The runner from the first reference image lifts the trophy from the second reference image."
# Graded, not snapped: K = 0.1 * 1 + 0.4 * 0.7 + 0.4 * 0.5 (no text required) + 0.1 * 0.5 = 0.63
KNOWGEN = {"rationale": "Constraints: the runner, the trophy. Close.", "faithfulness": 1, "visual_correctness": 0.7,
           "text_accuracy": 0, "text_accuracy_na": True, "aesthetics": 0.5}
TEXT = {"rationale": "Constraints: the runner. Mostly sufficient.", "score": 0.6}  # snapped to 0.5


class JudgeScript:
    """Answers the KnowGen and the text judge from fixed replies; notes when each request arrived."""

    def __init__(self, knowgen: str | Reply | None = None, text: str | Reply | None = None):
        self.replies = {"knowgen": knowgen or json.dumps(KNOWGEN), "text": text or json.dumps(TEXT)}
        self.arrived: dict[str, float] = {}

    def __call__(self, body):
        kind = "knowgen" if body["messages"][-1]["content"][-1]["text"].startswith("Item ") else "text"
        self.arrived[kind] = time.monotonic()
        return self.replies[kind]


@pytest.fixture
def apis():
    with ImageApis() as server:
        yield server


@pytest.fixture
def task(tmp_path):
    return Task(id="t7", prompt=PROMPT, gt_image=str(make_image(tmp_path / "gt.png", size=(1328, 1328), color=(0, 0, 200))))


@contextlib.asynccontextmanager
async def rig(tmp_path, apis, script, *, text_coef=0.0, judge=None, reward=None):
    """(rewarder, judge server): the generator is the OpenAI Images stand-in, the judge a scripted server."""
    with ScriptedPolicyServer(script, model="judge", api_key=JUDGE_KEY) as server:
        settings = load_settings({
            "generator": {"backend": "openai", "api_key": KEY, "api_base_url": apis.url + "/v1", "max_retries": 2},
            "judge": {"base_url": server.base_url, "model": "judge", "api_key": JUDGE_KEY, "text_coef": text_coef,
                      "max_retries": 1, **(judge or {})},
            "reward": reward or {}})
        generator = build_generator(settings)
        judging = Judge(settings.judge, cache=None, image_dir=tmp_path / "judge-images")
        try:
            yield Rewarder(settings, generator=generator, judge=judging, image_dir=tmp_path / "reward-images"), server
        finally:
            await judging.aclose()
            await generator.aclose()


def references(folder: Path, count: int, *, exist: bool = True) -> list[Path]:
    paths = [folder / f"ref{index}.png" for index in range(count)]
    if exist:
        for index, path in enumerate(paths):
            make_image(path, color=(30 * index, 90, 60))
    return paths


def trajectory(task, *, termination="answer", gen_prompt=GEN_PROMPT, refs=(), steps=(), error=None):
    answered = None
    if termination == "answer":
        answered = Answer(gen_prompt=gen_prompt, reference_images=[
            ReferenceImage(img_id=f"IMG_{index + 1:03d}", local_path=str(path), title=f"photo {index}",
                           note="copy the face", page_url="https://example.org/race") for index, path in enumerate(refs)])
    return Trajectory(task=task, messages=[Message(role="user", text=task.prompt)], steps=list(steps), answer=answered,
                      termination=termination, error=error, started_at="2026-12-01T12:00:00+00:00")


def outage_step():
    record = ToolCallRecord(name="search", arguments={"queries": ["marathon 2026 winner"]}, result_text="Search failed.",
                            error="serper answered HTTP 503 after 3 attempts", duration_s=0.2, outage=True)
    return Step(round=1, response=call("search", queries=["marathon 2026 winner"]), action="tool_call", tool_call=record)


@pytest.mark.parametrize("coef", [0.0, 0.5])
async def test_a_real_rollout_is_rendered_judged_and_given_the_hand_computed_reward(
        tmp_path, apis, task, make_agent, coef):
    with ScriptedPolicyServer({PROMPT: [call("image_search", query="marathon winner", top_k=2),
                                        answer(GEN_PROMPT, "IMG_001", "IMG_002")]}) as policy:
        rollout = await make_agent(policy).run(task)
    assert rollout.termination == "answer"
    # Both answers arrive late: the second request reaching the judge before the first is answered
    # proves the image and text judges run at the same time.
    script = JudgeScript(Reply(text=json.dumps(KNOWGEN), delay_s=0.5), Reply(text=json.dumps(TEXT), delay_s=0.5))
    async with rig(tmp_path, apis, script, text_coef=coef) as (rewarder, judge_server):
        record = await rewarder.score(task, rollout, name="step3/t7 r2")

    assert record.status == "scored" and record.reason is None and record.text_coef == coef
    assert record.image_score == 0.63 and record.text_accuracy_na
    assert record.judge_scores == {"faithfulness": 1.0, "visual_correctness": 0.7, "text_accuracy": 0.5, "aesthetics": 0.5}
    if coef:
        assert record.text_score == 0.5 and record.reward == pytest.approx(0.5 * 0.63 + 0.5 * 0.5)
        assert abs(script.arrived["text"] - script.arrived["knowgen"]) < 0.5
        assert record.text_rationale.startswith("Constraints: the runner.")
    else:
        assert record.text_score is None and record.reward == 0.63 and set(script.arrived) == {"knowgen"}
    # The image: saved inside image_dir under a sanitised name, what the generator sent, a real PNG.
    saved = Path(record.generated_image)
    assert saved.parent == (tmp_path / "reward-images").resolve() and saved.name == image_name("step3/t7 r2") + ".png"
    with Image.open(saved) as image:
        assert image.format == "PNG" and image.size == (1024, 1024)
    kind, body = apis.requests[-1]
    answer_paths = [ref.local_path for ref in rollout.answer.reference_images]
    assert kind == "openai.edits" and body["images"] == 2 and body["prompt"] == GEN_PROMPT
    assert record.reference_images == answer_paths and record.gen_prompt == GEN_PROMPT
    # The image judge sees the original task prompt (not gen_prompt) with the generated image and the ground truth.
    knowgen = next(r for r in judge_server.requests if r["messages"][-1]["content"][-1]["text"].startswith("Item "))
    judged_text = knowgen["messages"][-1]["content"][-1]["text"]
    assert PROMPT in judged_text and GEN_PROMPT not in judged_text
    assert [p["type"] for p in knowgen["messages"][-1]["content"]].count("image_url") == 2
    assert record.generation_s > 0 and record.judge_s >= 0.5


async def test_policy_failures_score_zero_without_calling_the_generator_or_the_judge(tmp_path, apis, task):
    folder = tmp_path / "refs"
    cases = {
        "no_answer": trajectory(task, termination="no_answer"),
        "answer_invalid": trajectory(task, termination="answer_invalid"),
        "repeated_response": trajectory(task, termination="repeated_response"),
        "context_exceeded": trajectory(task, termination="context_exceeded"),
        "empty_gen_prompt": trajectory(task, gen_prompt="  \n", refs=references(folder, 2)),
    }
    counts = {
        "no references": trajectory(task, refs=[]),
        "files gone": trajectory(task, refs=references(tmp_path / "gone", 2, exist=False)),
        "five references": trajectory(task, refs=references(folder, 5)),
        "two, with three required": trajectory(task, refs=references(folder, 2)),
    }
    async with rig(tmp_path, apis, JudgeScript(), text_coef=0.5, reward={"min_input_images": 1}) as (rewarder, server):
        records = {reason: await rewarder.score(task, rollout, name=reason) for reason, rollout in cases.items()}
        counted = {label: await rewarder.score(task, rollout, name=label) for label, rollout in list(counts.items())[:3]}
    async with rig(tmp_path, apis, JudgeScript(), reward={"min_input_images": 3}) as (strict, strict_server):
        counted["two, with three required"] = await strict.score(task, counts["two, with three required"], name="x")

    for reason, record in records.items():
        assert (record.status, record.reward, record.reason) == ("policy_failure", 0.0, reason), reason
    for label, record in counted.items():
        assert (record.status, record.reward, record.reason) == ("policy_failure", 0.0, "reference_count"), label
    assert "0 of the answer's 2 reference images are on disk" in counted["files gone"].detail
    assert "5 of the answer's 5" in counted["five references"].detail and "1 to 4" in counted["five references"].detail
    assert all(r.image_score is None and r.generated_image is None for r in [*records.values(), *counted.values()])
    assert apis.requests == [] and server.requests == [] and strict_server.requests == []
    assert not (tmp_path / "reward-images").exists()


async def test_a_generator_answering_503_after_its_retries_is_excluded(tmp_path, apis, task):
    rollout = trajectory(task, gen_prompt="unavailable", refs=references(tmp_path, 1))
    async with rig(tmp_path, apis, JudgeScript()) as (rewarder, judge_server):
        record = await rewarder.score(task, rollout, name="r0")
    assert (record.status, record.reward, record.reason) == ("excluded", None, "generator_failed")
    assert "HTTP 503" in record.detail and "overloaded" in record.detail
    assert len(apis.requests) == 3  # the first try and the two retries configured
    assert judge_server.requests == [] and record.generated_image is None


async def test_a_judge_past_its_deadline_is_excluded(tmp_path, apis, task):
    slow = Reply(text=json.dumps(KNOWGEN), delay_s=1.5)
    rollout = trajectory(task, refs=references(tmp_path, 2))
    async with rig(tmp_path, apis, JudgeScript(slow, slow), text_coef=0.5,
                   judge={"deadline_s": 0.5, "request_timeout_s": 0.4, "max_retries": 0}) as (rewarder, judge_server):
        started = time.monotonic()
        record = await rewarder.score(task, rollout, name="r0")
        took = time.monotonic() - started
    assert (record.status, record.reward, record.reason) == ("excluded", None, "judge_failed")
    assert record.image_score is None and record.text_score is None and took < 1.4
    assert Path(record.generated_image).is_file() and len(judge_server.requests) == 2


async def test_a_missing_ground_truth_is_excluded_first_and_without_any_call(tmp_path, apis, task):
    folder = tmp_path / "refs"
    gone = task.model_copy(update={"gt_image": str(tmp_path / "no-such.png")})
    folder_gt = task.model_copy(update={"gt_image": str(tmp_path)})
    unset = task.model_copy(update={"gt_image": None})
    async with rig(tmp_path, apis, JudgeScript()) as (rewarder, judge_server):
        records = [await rewarder.score(gone, trajectory(gone, refs=references(folder, 2)), name="a"),
                   await rewarder.score(folder_gt, trajectory(folder_gt, refs=references(folder, 2)), name="b"),
                   # Checked before the other exclusions and the policy's failures.
                   await rewarder.score(unset, trajectory(unset, termination="error", error="down"), name="c"),
                   await rewarder.score(gone, trajectory(gone, termination="no_answer", steps=[outage_step()]), name="d")]
    assert [(r.status, r.reward, r.reason) for r in records] == [("excluded", None, "missing_ground_truth")] * 4
    assert apis.requests == [] and judge_server.requests == []


async def test_outages_and_an_empty_prompt_are_excluded_without_any_call(tmp_path, apis, task):
    refs = references(tmp_path / "refs", 2)
    blank = task.model_copy(update={"prompt": "   "})
    async with rig(tmp_path, apis, JudgeScript()) as (rewarder, judge_server):
        outage = await rewarder.score(task, trajectory(task, refs=refs, steps=[outage_step()]), name="a")
        outage_no_answer = await rewarder.score(task, trajectory(task, termination="no_answer", steps=[outage_step()]),
                                                name="b")
        backend = await rewarder.score(task, trajectory(task, termination="error", error="policy endpoint answered "
                                                        "HTTP 502"), name="c")
        empty = await rewarder.score(blank, trajectory(blank, refs=refs), name="d")
    assert (outage.status, outage.reward, outage.reason) == ("excluded", None, "tool_outage")
    assert outage.detail == "search: serper answered HTTP 503 after 3 attempts"
    assert outage_no_answer.reason == "tool_outage" and outage_no_answer.reward is None
    assert (backend.status, backend.reason, backend.detail) == ("excluded", "policy_backend", "policy endpoint answered HTTP 502")
    assert (empty.status, empty.reward, empty.reason) == ("excluded", None, "empty_prompt")
    assert apis.requests == [] and judge_server.requests == []


async def test_the_judge_key_never_reaches_a_record_even_when_the_judge_echoes_it(tmp_path, apis, task):
    refs = references(tmp_path / "refs", 1)
    echo_error = Reply(status=400, error=f"invalid request from key {JUDGE_KEY} (Authorization: Bearer {JUDGE_KEY})")
    echo = {"rationale": f"Constraints: the runner. My key is {JUDGE_KEY}."}
    echo_answers = json.dumps({**KNOWGEN, **echo}), json.dumps({**TEXT, **echo})
    async with rig(tmp_path, apis, JudgeScript(echo_error)) as (rewarder, judge_server):
        failed = await rewarder.score(task, trajectory(task, refs=refs), name="a")
    async with rig(tmp_path, apis, JudgeScript(*echo_answers), text_coef=0.5) as (rewarder, _):
        scored = await rewarder.score(task, trajectory(task, refs=refs), name="b")
    assert (failed.status, failed.reason) == ("excluded", "judge_failed") and "HTTP 400" in failed.detail
    assert scored.status == "scored" and "[redacted]" in scored.rationale and "[redacted]" in scored.text_rationale
    assert len(judge_server.requests) == 1  # a 400 is not retried
    for record in (failed, scored):
        assert JUDGE_KEY not in record.model_dump_json() and JUDGE_KEY not in repr(record)


def test_blend_and_image_names():
    assert blend(0.63, 0.5, 0.5) == pytest.approx(0.565) and blend(0.63, 0.0, 0.0) == 0.63
    assert blend(0.8, 0.2, 1.7) == 0.2 and blend(0.0, 0.0, 0.5) == 0.0
    assert image_name("step3-t7-r2") == "step3-t7-r2"
    odd = [image_name(n) for n in ("../../etc/passwd", "step3/t7", "step3_t7", "..", "")]
    assert all("/" not in n and not n.startswith(".") and n for n in odd) and len(set(odd)) == len(odd)
