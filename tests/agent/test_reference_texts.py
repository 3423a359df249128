"""`gensearcher prompts import-reference`: the reference system's fixed texts read from the user's own checkout
(parsed, never executed), stored in one file the settings point at, and used verbatim, with the reference's
framing, by the agent loop and the judge.

The checkout here is a fake one written by the test: our own placeholder texts in the same Python structure
as the reference repository (module-level constants, `.strip()`, implicit concatenation, the two branches of
`if finish_reason == "length"`), around code that must never run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from gensearcher.agent import Agent, Framing, Task, build_agent, import_reference_texts, load_reference_texts
from gensearcher.agent.prompts import (
    REFERENCE_AGENT_FILE,
    REFERENCE_KNOWGEN_FILE,
    REFERENCE_REWARD_FILE,
    judge_rubrics,
)
from gensearcher.config import AgentConfig, JudgeConfig, PolicyConfig, load_settings
from gensearcher.errors import ConfigError, UserError
from gensearcher.judge import Judge
from gensearcher.policy.openai_chat import OpenAIChatPolicy
from gensearcher.testing import Reply, ScriptedPolicyServer
from gensearcher.tools import Toolbox
from tests.helpers import answer, call

SYSTEM = "Placeholder system prompt for the test.\nTool block {with braces} and {{tools}} left as written.\n "
FINAL = "=== PLACEHOLDER FINAL ===\nAnswer now, with the ids you have."
TOO_LONG = "=== PLACEHOLDER TOO LONG ===\nBe brief.\n\nOnly a tool call or an answer."
FORMAT = "Placeholder format error: one tool call or one answer. Try again."
KNOWGEN = "Placeholder KnowGen rubric: score faithfulness, visual_correctness, text_accuracy, aesthetics."
REWARD_KNOWGEN = "Placeholder image-reward rubric (the same as KnowGen's in the reference)."
TEXT = "Placeholder text-reward rubric: return {\"rationale\", \"score\"}."
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TASK = "A poster of the 2026 champion lifting the trophy"


def write_checkout(root: Path, marker: Path) -> Path:
    side_effect = f"open({str(marker)!r}, 'w').write('executed')\n"
    agent = root / REFERENCE_AGENT_FILE
    agent.parent.mkdir(parents=True)
    agent.write_text(
        side_effect
        + "import json5\nfrom rllm.engine.rollout import RolloutEngine\n\n"
        + f"FINAL_MESSAGE = {chr(34) * 3}\n{FINAL}\n\n{chr(34) * 3}.strip()\n\n"
        + f"SYSTEM_PROMPT_GEN_IMAGE = {SYSTEM!r}\n\n"
        + "class Agent:\n"
        + "    async def run(self, response, last_round_was_too_long=False):\n"
        + "        finish_reason = getattr(response, 'finish_reason', None)\n"
        + "        if finish_reason == 'length':\n"
        + "            if last_round_was_too_long:\n"
        + "                return 'repeated_response'\n"
        + "            observation = (\n"
        + "".join(f"                {line!r}\n" for line in TOO_LONG.splitlines(keepends=True))
        + "            )\n"
        + "        else:\n"
        + f"            observation = {FORMAT!r}\n"
        + "        return observation\n")
    reward = root / REFERENCE_REWARD_FILE
    reward.write_text(side_effect + f"WORLDGEN_SYSTEM_PROMPT = r{REWARD_KNOWGEN!r}\n"
                      + f"TEXT_REWARD_SYSTEM_PROMPT = {TEXT[:30]!r} + {TEXT[30:]!r}\n")
    knowgen = root / REFERENCE_KNOWGEN_FILE
    knowgen.parent.mkdir(parents=True)
    knowgen.write_text("raise SystemExit('must not run')\n" + f"SYSTEM_PROMPT: str = {KNOWGEN!r}\n")
    (root / ".git" / "refs" / "heads").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".git" / "refs" / "heads" / "main").write_text(COMMIT + "\n")
    return root


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return write_checkout(tmp_path / "Gen-Searcher", tmp_path / "executed.txt")


@pytest.fixture
def texts_file(tmp_path: Path, checkout: Path) -> Path:
    path = tmp_path / "reference-texts.json"
    import_reference_texts(checkout).save(path)
    return path


def test_import_reads_every_text_without_running_the_checkout(tmp_path, checkout):
    result = subprocess.run([sys.executable, "-m", "gensearcher", "prompts", "import-reference", str(checkout),
                             "--out", "texts.json"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    assert "GENSEARCHER_REFERENCE_TEXTS=texts.json" in result.stdout
    assert not (tmp_path / "executed.txt").exists()  # parsed, never imported or run
    texts = load_reference_texts(tmp_path / "texts.json")
    assert (texts.system_prompt, texts.final_message, texts.too_long_message, texts.format_error_message) == (
        SYSTEM, FINAL, TOO_LONG, FORMAT)
    assert texts.knowgen_rubric == KNOWGEN and texts.text_reward_rubric == TEXT  # KE's rubric wins over RW's
    assert texts.commit == COMMIT and sorted(texts.files) == sorted(
        [REFERENCE_AGENT_FILE, REFERENCE_REWARD_FILE, REFERENCE_KNOWGEN_FILE])
    assert all(len(digest) == 64 for digest in texts.files.values())


def test_without_the_knowgen_folder_the_reward_rubric_is_used(checkout):
    (checkout / REFERENCE_KNOWGEN_FILE).unlink()
    assert import_reference_texts(checkout).knowgen_rubric == REWARD_KNOWGEN


@pytest.mark.parametrize("edit, message", [
    (lambda root: (root / REFERENCE_REWARD_FILE).unlink(), "cannot find Gen-DeepResearch-RL"),
    (lambda root: (root / REFERENCE_AGENT_FILE).write_text('SYSTEM_PROMPT_GEN_IMAGE = f"{x}"\nFINAL_MESSAGE = ""\n'),
     "SYSTEM_PROMPT_GEN_IMAGE in"),
    (lambda root: (root / REFERENCE_AGENT_FILE).write_text("SYSTEM_PROMPT_GEN_IMAGE = 'x'\nFINAL_MESSAGE = build()\n"),
     "is not a plain string (Call)"),
    (lambda root: (root / REFERENCE_AGENT_FILE).write_text("SYSTEM_PROMPT_GEN_IMAGE = 'x'\nFINAL_MESSAGE = 'y'\n"),
     "no 'if finish_reason == \"length\"'"),
    (lambda root: (root / REFERENCE_AGENT_FILE).write_text("def broken(:\n"), "cannot parse"),
])
def test_a_checkout_that_does_not_fit_is_a_clear_error(checkout, edit, message):
    edit(checkout)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_reference_texts(checkout)


def test_a_bad_texts_file_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="reference texts file not found"):
        load_reference_texts(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text(json.dumps({"source": "x"}))
    with pytest.raises(UserError, match="is not a reference texts file"):
        load_reference_texts(tmp_path / "bad.json")


async def test_the_loop_uses_the_texts_verbatim_with_the_reference_framing(tmp_path, texts_file, tools):
    texts = load_reference_texts(texts_file)
    script = [
        "I think it is a poster.",                                                     # neither tag
        Reply(text="<think>" + "long " * 50, finish_reason="length"),                 # cut off
        '<think>x</think><tool_call>{"name": "search", "arguments": {</tool_call>',  # broken JSON
        call("search", queries=["tour"]) + call("browse", url="https://example.org", query="q"),  # two calls
        answer("The champion."),                                                       # the final round
    ]
    with ScriptedPolicyServer({TASK: script}) as server:
        config = PolicyConfig(base_url=server.base_url, model="scripted", max_retries=0)
        toolbox = Toolbox({"search": tools.search, "image_search": tools.image_search, "browse": tools.browse})
        agent = Agent(OpenAIChatPolicy(config), toolbox, config=AgentConfig(date="2026-11-27", max_llm_calls=4),
                      max_refs=5, max_pixels=160_000, image_dir=tmp_path / "policy", framing=Framing(texts))
        try:
            trajectory = await agent.run(Task(id=1, prompt=TASK))
        finally:
            await agent.policy.aclose()
        requests = server.requests
    assert trajectory.termination == "answer" and trajectory.rounds == 5
    sent = requests[-1]["messages"]
    assert sent[0] == {"role": "system", "content": SYSTEM + "2026-11-27"}  # the date right after, as the reference
    assert sent[1] == {"role": "user", "content": TASK}
    users = [m["content"] for m in sent[2:] if m["role"] == "user"]
    assert users[0] == FORMAT and users[1] == TOO_LONG  # plain user turns, the reference's words exactly
    assert users[2].startswith("<tool_response>\n[Tool Error]: the <tool_call> content is not valid JSON")
    assert users[3] == "<tool_response>\n[Result for tour](https://example.org/0) a snippet\n</tool_response>"
    assert users[4] == FINAL
    assert [m["role"] for m in sent] == ["system", "user"] + ["assistant", "user"] * 4 + ["user"]
    # Our own texts never appear.
    assert "RESPONSE TOO LONG:" not in json.dumps(sent) and "could not be used" not in json.dumps(sent)


async def test_settings_point_the_agent_and_the_judge_at_the_texts(tmp_path, texts_file):
    settings = load_settings({"reference_texts": str(texts_file), "agent": {"date": "2026-11-27"},
                              "policy": {"base_url": "http://127.0.0.1:9/v1", "model": "m"},
                              "search": {"backend": "serper", "serper_api_key": "k"}})
    async with build_agent(settings, tmp_path / "run") as agent:
        assert agent.system_prompt == SYSTEM + "2026-11-27"
        assert agent.record["reference_texts_sha256"] == load_reference_texts(texts_file).digest()
    with pytest.raises(UserError, match="choose one"):
        async with build_agent(settings, tmp_path / "run", system_prompt_file=texts_file):
            pass
    missing = settings.model_copy(update={"reference_texts": tmp_path / "moved.json"})
    with pytest.raises(ConfigError, match="GENSEARCHER_REFERENCE_TEXTS: reference texts file not found"):
        async with build_agent(missing, tmp_path / "run"):
            pass

    for name in ("generated.png", "truth.png"):
        Image.new("RGB", (64, 48), (200, 30, 30)).save(tmp_path / name)
    scores = json.dumps({"rationale": "ok", "faithfulness": 1, "visual_correctness": 0.5, "text_accuracy": 0.5,
                         "aesthetics": 0.5, "text_accuracy_na": True})
    with ScriptedPolicyServer(lambda body: scores if "faithfulness" in body["messages"][0]["content"]
                              else '{"rationale": "ok", "score": 0.75}') as server:
        judge = Judge(JudgeConfig(base_url=server.base_url, model="judge"), cache=None, image_dir=tmp_path / "j",
                      rubrics=judge_rubrics(settings.reference_texts, {"wise-verified": "our own override"}))
        try:
            await judge.knowgen(1, TASK, tmp_path / "generated.png", tmp_path / "truth.png")
            await judge.text_reward(TASK, "gen prompt", [], tmp_path / "truth.png")
        finally:
            await judge.aclose()
        systems = [request["messages"][0]["content"] for request in server.requests]
    assert systems == [KNOWGEN, TEXT]
    assert judge.rubric("wise-verified") == "our own override"
