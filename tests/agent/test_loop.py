"""The agent loop against a real scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import json

from PIL import Image

from gensearcher.agent import Task
from gensearcher.testing import Reply, ScriptedPolicyServer
from tests.helpers import answer, call, image_parts, user_texts

TASK = "A poster of the 2026 champion lifting the trophy"


async def run(make_agent, script, task=TASK, **kwargs):
    with ScriptedPolicyServer({task: script}) as server:
        agent = make_agent(server, **kwargs)
        trajectory = await agent.run(Task(id="t1", prompt=task))
        return trajectory, server.requests


async def test_answer_with_image_search_assigns_ids_attaches_images_and_enriches(make_agent, picture_dir):
    trajectory, requests = await run(make_agent, [
        call("image_search", query="champion", top_k=5),
        answer("The champion from the second reference image with the trophy from the first reference image.",
               "IMG_005", "IMG_002"),
    ], max_images_per_search=3)

    assert trajectory.termination == "answer"
    assert [image.img_id for image in trajectory.images] == ["IMG_001", "IMG_002", "IMG_003", "IMG_004", "IMG_005"]
    # Sorted by id, enriched from the registry.
    refs = trajectory.answer.reference_images
    assert [r.img_id for r in refs] == ["IMG_002", "IMG_005"]
    assert trajectory.answer.reordered is True
    assert refs[0].local_path.endswith("pic1.png") and refs[0].url == "https://img.example.org/pic1.png"
    assert refs[1].title == "title pic4" and refs[1].note == "use IMG_005"
    # The observation lists every hit by id, and only max_images_per_search images are attached.
    observation = requests[1]["messages"][-1]
    text = user_texts(requests[1])[-1]
    assert text.startswith("<tool_response>\n--- image search result for [champion] ---")
    assert "IMG_004: title: title pic3" in text and "  local_path: " in text
    urls = image_parts(observation)
    assert len(urls) == 3
    # Images are capped to the pixel budget and travel as base64 JPEG data URLs; they come before the text.
    assert observation["content"][0]["type"] == "image_url" and observation["content"][-1]["type"] == "text"
    decoded = Image.open(io.BytesIO(base64.b64decode(urls[0].split(",", 1)[1])))
    assert decoded.format == "JPEG"
    # The trajectory keeps the attached images as files with hashes, never base64.
    stored = trajectory.messages[3].images
    assert len(stored) == 3 and all(len(image.sha256) == 64 for image in stored)
    assert "base64" not in trajectory.model_dump_json()


async def test_large_image_is_capped_to_max_pixels(make_agent):
    trajectory, _requests = await run(make_agent, [
        call("image_search", query="second", top_k=3),
        answer("x", "IMG_003"),
    ], policy={"max_pixels": 10_000})
    attached = trajectory.messages[3].images
    large = next(image for image in attached if image.width > 64)  # pic4 was 1200x900
    assert large.width * large.height <= 10_000
    assert abs(large.width / large.height - 1200 / 900) < 0.05


async def test_reseen_image_keeps_its_id_and_ids_continue(make_agent):
    trajectory, _requests = await run(make_agent, [
        call("image_search", query="champion", top_k=2),   # pic0, pic1 -> IMG_001, IMG_002
        call("image_search", query="second", top_k=2),     # pic2, pic3 -> IMG_003, IMG_004
        call("image_search", query="champion", top_k=3),   # pic0, pic1 again, pic2 again
        answer("x", "IMG_004", "IMG_001"),
    ])
    assert trajectory.termination == "answer"
    assert [call.image_ids for call in trajectory.tool_calls] == [
        ["IMG_001", "IMG_002"], ["IMG_003", "IMG_004"], ["IMG_001", "IMG_002", "IMG_003"]]
    assert len(trajectory.images) == 4


async def test_answer_without_references_is_valid(make_agent):
    trajectory, _ = await run(make_agent, [answer("A plain text prompt.")])
    assert trajectory.termination == "answer"
    assert trajectory.answer.reference_images == [] and trajectory.rounds == 1


async def test_unknown_image_id_becomes_an_observation_and_the_model_corrects_it(make_agent):
    trajectory, requests = await run(make_agent, [
        call("image_search", query="champion", top_k=1),
        answer("x", "IMG_009"),
        answer("x", "img_1"),  # lenient id spelling
    ])
    assert trajectory.termination == "answer"
    assert [r.img_id for r in trajectory.answer.reference_images] == ["IMG_001"]
    feedback = user_texts(requests[2])[-1]
    assert "unknown image id(s) IMG_009" in feedback and "IMG_001" in feedback
    assert trajectory.steps[1].problem.startswith("unknown image id(s)")


async def test_too_many_references_and_duplicates(make_agent):
    trajectory, requests = await run(make_agent, [
        call("image_search", query="champion", top_k=4),
        answer("x", "IMG_001", "IMG_002", "IMG_003"),
        answer("x", "IMG_002", "IMG_001", "IMG_002"),
    ], max_refs=2)
    assert "3 reference images were cited; choose at most 2" in user_texts(requests[2])[-1]
    assert trajectory.termination == "answer"
    assert [r.img_id for r in trajectory.answer.reference_images] == ["IMG_001", "IMG_002"]
    assert trajectory.answer.duplicates_removed == 1


async def test_every_error_observation_reaches_the_model(make_agent, tools):
    trajectory, requests = await run(make_agent, [
        '<think>x</think><tool_call>{"name": "search", "arguments": {"queries": ["a"</tool_call>',  # broken JSON
        call("paint", prompt="x"),                                                              # unknown tool
        call("image_search", query="x", save_dir="/etc"),                                       # not in schema
        call("browse", url="https://broken.example.org", query="q"),                            # tool failure
        call("browse", url="https://slow.example.org", query="q"),                              # tool timeout
        call("image_search", query="nothing"),                                                  # no results hint
        "I think the answer is a poster.",                                                      # no tags
        call("search", queries=["a"]) + answer("x"),                                            # both
        answer("x"),
    ], tool_timeout_s=0.5)
    feedback = [user_texts(request)[-1] for request in requests[1:]]
    assert "not valid JSON" in feedback[0]
    assert "there is no tool named 'paint'" in feedback[1] and "search, image_search, browse" in feedback[1]
    assert "save_dir: not an allowed argument" in feedback[2]
    assert "browse failed: the page answered HTTP 404" in feedback[3]
    assert "browse did not finish within 0.5 s" in feedback[4]
    assert "No images found for 'nothing'" in feedback[5] and "--- image search result for [nothing] ---" in feedback[5]
    assert "neither a <tool_call> nor an <answer>" in feedback[6]
    assert "both a <tool_call> and an <answer>" in feedback[7]
    assert trajectory.termination == "answer" and trajectory.rounds == 9
    # The arguments outside the schema never reached a tool.
    assert all(name != "image_search" or args.query != "x" for name, args in tools.calls)
    errors = [c.error for c in trajectory.tool_calls]
    assert errors[0].startswith("Error: there is no tool") and errors[-1] is None


async def test_lenient_tool_call_json_is_accepted(make_agent, tools):
    trajectory, _ = await run(make_agent, [
        "<think>x</think><tool_call>{name: 'search', arguments: {queries: 'tour de france',}}</tool_call>",
        "<think>x</think><tool_call>```json\n{\"name\": \"search\", \"arguments\": \"{\\\"queries\\\": [\\\"b\\\"]}\"}\n```</tool_call>",
        answer("x"),
    ])
    assert trajectory.termination == "answer"
    assert [args.queries for _, args in tools.calls] == [["tour de france"], ["b"]]


async def test_truncated_turn_gets_the_too_long_notice(make_agent):
    trajectory, requests = await run(make_agent, [
        Reply(text="<think>" + "very long " * 20, finish_reason="length"),
        answer("x"),
    ])
    assert user_texts(requests[1])[-1].startswith("<tool_response>\nRESPONSE TOO LONG")
    assert trajectory.steps[0].finish_reason == "length" and trajectory.termination == "answer"


async def test_budget_runs_out_then_final_round_answers(make_agent):
    script = [call("search", queries=[f"q{i}"]) for i in range(3)] + [answer("final")]
    trajectory, requests = await run(make_agent, script, max_llm_calls=3)
    assert trajectory.termination == "answer" and trajectory.rounds == 4
    assert trajectory.steps[-1].final_round
    assert user_texts(requests[3])[-1].startswith("FINAL STEP")


async def test_no_answer_when_final_round_calls_a_tool(make_agent):
    script = [call("search", queries=[f"q{i}"]) for i in range(3)]
    trajectory, _ = await run(make_agent, script, max_llm_calls=2)
    assert trajectory.termination == "no_answer" and trajectory.rounds == 3
    assert trajectory.answer is None


async def test_answer_invalid_when_the_final_answer_is_wrong(make_agent):
    trajectory, _ = await run(make_agent, [call("search", queries=["a"]), answer("x", "IMG_042")], max_llm_calls=1)
    assert trajectory.termination == "answer_invalid"
    assert "IMG_042" in trajectory.steps[-1].problem


async def test_repeated_response_stops_the_run(make_agent):
    same = call("search", queries=["same query"])
    trajectory, _ = await run(make_agent, [same, same, answer("x")])
    assert trajectory.termination == "repeated_response" and trajectory.rounds == 2


async def test_context_guard_stops_before_overflowing(make_agent):
    trajectory, requests = await run(make_agent, [call("image_search", query="champion", top_k=5), answer("x")],
                                     policy={"max_pixels": 1_000_000}, max_context_tokens=3_500,
                                     max_new_tokens_per_turn=1_000)
    assert trajectory.termination == "context_exceeded"
    assert len(requests) == 1 and "token guard" in trajectory.error


async def test_server_context_error_ends_as_context_exceeded(make_agent):
    trajectory, _ = await run(make_agent, [Reply(status=400, error="This model's maximum context length is 32768 tokens")])
    assert trajectory.termination == "context_exceeded"


async def test_policy_failure_is_retried_then_recorded_as_error(make_agent):
    trajectory, requests = await run(make_agent, [Reply(status=503, error="overloaded", retry_after=0)] * 5)
    assert trajectory.termination == "error" and "after 3 attempt(s)" in trajectory.error
    assert len(requests) == 3  # one try + max_retries=2


async def test_retry_after_429_then_success_records_attempts(make_agent):
    trajectory, _requests = await run(make_agent, [Reply(status=429, error="slow down", retry_after=0.05), answer("x")])
    assert trajectory.termination == "answer"
    assert trajectory.steps[0].attempts == 2


async def test_system_prompt_defines_the_protocol_and_tools(make_agent):
    _, requests = await run(make_agent, [answer("x")])
    system = requests[0]["messages"][0]["content"]
    for needle in ('"name": "search"', '"queries"', '"name": "image_search"', '"name": "browse"', "<tool_call>",
                   "<answer>", '"gen_prompt"', '"reference_images"', "IMG_", "2026-11-27", "FINAL STEP"):
        assert needle in system
    assert requests[0]["messages"][1] == {"role": "user", "content": TASK}
    assert requests[0]["max_tokens"] == 4096


async def test_custom_system_template(make_agent):
    _, requests = await run(make_agent, [answer("x")], system_template="Custom prompt.\n{{tools}}\nDate: {{date}}")
    system = requests[0]["messages"][0]["content"]
    assert system.startswith("Custom prompt.\n{") and system.endswith("Date: 2026-11-27")


async def test_hallucinated_tool_response_is_cut(make_agent):
    trajectory, _ = await run(make_agent, [
        call("search", queries=["a"]) + "\n<tool_response>made up</tool_response>",
        answer("x"),
    ])
    assert "made up" not in trajectory.messages[2].text


async def test_token_ids_and_logprobs_are_kept_per_turn(make_agent):
    trajectory, requests = await run(make_agent, [answer("x")], policy={"return_token_ids": True, "logprobs": True})
    assert requests[0]["return_token_ids"] is True and requests[0]["logprobs"] is True
    step = trajectory.steps[0]
    assert step.completion_token_ids == list(step.response.encode())
    assert len(step.completion_logprobs) == len(step.completion_token_ids)
    assert step.prompt_token_ids and trajectory.usage.completion_tokens == len(step.completion_token_ids)


async def test_reasoning_split_by_the_server_is_restored(make_agent):
    body = json.dumps({"gen_prompt": "x", "reference_images": []})
    trajectory, _ = await run(make_agent, [Reply(text=f"<answer>{body}</answer>", reasoning="thinking")])
    assert trajectory.termination == "answer"
    assert trajectory.messages[2].text.startswith("<think>\nthinking\n</think>")


async def test_many_trajectories_share_one_loop(make_agent, picture_dir):
    import asyncio

    prompts = [f"task {i}" for i in range(20)]
    script = {p: [call("image_search", query="champion", top_k=1), answer("x", "IMG_001")] for p in prompts}
    with ScriptedPolicyServer(script, latency_s=0.05) as server:
        agent = make_agent(server)
        trajectories = await asyncio.gather(*(agent.run(Task(id=i, prompt=p)) for i, p in enumerate(prompts)))
    assert [t.termination for t in trajectories] == ["answer"] * 20
    assert all(t.answer.reference_images[0].img_id == "IMG_001" for t in trajectories)


async def test_reference_executor_spellings_are_normalised_recorded_and_cost_no_error(make_agent, tools):
    trajectory, requests = await run(make_agent, [
        call("search", query="tour winner 2026"),                             # query, a string
        call("search", query=["kit", "trophy"], top_k=3),                     # query, a list
        call("browse", url=["https://example.org/a", "https://example.org/b"], goal="the trophy"),
        call("search", queries=["kept"], query="dropped"),                    # both: queries wins
        call("image_search", query="x", sample_id="7"),                       # outside the schema: an error
        call("browse", url=["https://broken.example.org"], goal="q"),         # normalised, then the tool fails
        answer("x"),
    ])
    assert trajectory.termination == "answer"
    ran = [(name, args.model_dump()) for name, args in tools.calls]
    assert ran == [("search", {"queries": ["tour winner 2026"], "top_k": 5}),
                   ("search", {"queries": ["kit", "trophy"], "top_k": 3}),
                   ("browse", {"url": "https://example.org/a", "query": "the trophy"}),
                   ("search", {"queries": ["kept"], "top_k": 5}),
                   ("browse", {"url": "https://broken.example.org", "query": "q"})]
    records = trajectory.tool_calls
    assert [r.normalised for r in records[:4]] == [
        ["query: read as queries"], ["query: read as queries"],
        ["goal: read as query", "url: a list of 2, the first was read; the other 1 were not read"],
        ["query: ignored, queries was given"]]
    # Never a wasted round: no error, no problem, and the observation is the tool's result alone.
    assert all(r.error is None for r in records[:4]) and all(s.problem is None for s in trajectory.steps[:4])
    assert user_texts(requests[3])[-1] == "<tool_response>\nThe page https://example.org/a says: the trophy is silver.\n</tool_response>"
    # The record keeps what the model wrote and what ran.
    assert records[2].arguments == {"url": ["https://example.org/a", "https://example.org/b"], "goal": "the trophy"}
    assert records[2].arguments_run == {"url": "https://example.org/a", "query": "the trophy"}
    assert records[4].error.startswith("Error: invalid arguments for image_search: sample_id: not an allowed argument")
    assert records[4].arguments_run is None and records[4].normalised == []
    assert records[5].error == "Error: browse failed: the page answered HTTP 404"
    assert records[5].arguments_run == {"url": "https://broken.example.org", "query": "q"}
    assert records[5].normalised == ["goal: read as query", "url: a list of 1, the first was read"]
    # The prompt keeps showing the canonical schemas.
    system = requests[0]["messages"][0]["content"]
    schemas = [json.loads(line) for line in system.split("<tools>\n")[1].split("\n</tools>")[0].splitlines()]
    assert {s["function"]["name"]: sorted(s["function"]["parameters"]["properties"]) for s in schemas} == {
        "search": ["queries", "top_k"], "image_search": ["query", "top_k"], "browse": ["query", "url"]}
