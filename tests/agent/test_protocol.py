import json

import pytest

from gensearcher.agent.protocol import (
    AnswerTurn,
    InvalidTurn,
    ToolCallTurn,
    loads_lenient,
    parse_turn,
    strip_hallucinated_observation,
)


def test_tool_call_is_parsed():
    turn = parse_turn('<think>x</think>\n<tool_call>\n{"name": "search", "arguments": {"queries": ["a"]}}\n</tool_call>')
    assert turn == ToolCallTurn(name="search", arguments={"queries": ["a"]})


def test_second_tool_call_is_counted_not_run():
    text = '<tool_call>{"name": "search", "arguments": {}}</tool_call><tool_call>{"name": "browse"}</tool_call>'
    turn = parse_turn(text)
    assert isinstance(turn, ToolCallTurn) and turn.name == "search" and turn.ignored_calls == 1


def test_missing_arguments_default_to_empty_object():
    assert parse_turn('<tool_call>{"name": "search"}</tool_call>').arguments == {}


@pytest.mark.parametrize("text, problem", [
    ("just prose", "neither"),
    ("<tool_call>{\"name\": \"search\"}", "not closed"),
    ("<answer>{\"gen_prompt\": \"x\"}", "not closed"),
    ("<tool_call>[1, 2]</tool_call>", "JSON object like"),
    ("<tool_call>{\"arguments\": {}}</tool_call>", "JSON object like"),
    ("<tool_call>{{{</tool_call>", "not valid JSON"),
    ("<answer>[1]</answer>", "JSON object"),
    ('<tool_call>{"name": "s"}</tool_call><answer>{}</answer>', "both"),
])
def test_problems_are_described(text, problem):
    turn = parse_turn(text)
    assert isinstance(turn, InvalidTurn) and problem in turn.problem


def test_final_round_prefers_the_answer():
    text = '<tool_call>{"name": "s"}</tool_call><answer>{"gen_prompt": "x"}</answer>'
    assert isinstance(parse_turn(text, final_round=True), AnswerTurn)


@pytest.mark.parametrize("text", [
    '{"a": 1}',
    "{'a': 1,}",
    '```json\n{"a": 1}\n```',
    'Sure: {"a": 1} done',
    "{a: 1}",
])
def test_lenient_json(text):
    assert loads_lenient(text) == {"a": 1}


def test_lenient_json_reports_a_reason():
    with pytest.raises(ValueError):
        loads_lenient('{"a": ')


def test_hallucinated_observation_is_stripped():
    assert strip_hallucinated_observation("a <tool_response>fake") == "a"


@pytest.mark.parametrize("body, reason", [
    ('{"a": ' + "[" * 5000 + "]" * 5000 + "}", "nested more than 32 levels"),    # refused before parsing
    ("{a: " + "[" * 40 + "]" * 40 + "}", "nested more than 32 levels"),           # within the pre-scan, JSON5
    ('{"a": ' + "9" * 30 + "}", "a number is too large"),                          # parses, but not 64-bit
    ("{a: 0x" + "F" * 40 + "}", "a number is too large"),                          # JSON5 hex is not size-limited
    ('{"a": "' + "x" * 100_001 + '"}', "at most 100000 are read"),
])
def test_bounds_come_before_any_parser_recursion_or_cost(body, reason):
    with pytest.raises(ValueError, match=reason):
        loads_lenient(body)


def test_brackets_inside_strings_do_not_count_towards_depth():
    text = json.dumps({"gen_prompt": "[" * 100 + "{" * 100})
    assert loads_lenient(text)["gen_prompt"].startswith("[[[")


def test_json5_reads_only_small_bodies():
    small = "{a: '" + "x" * 7_000 + "'}"
    assert len(loads_lenient(small)["a"]) == 7_000
    with pytest.raises(ValueError):
        loads_lenient("{a: '" + "x" * 9_000 + "'}")  # strict JSON fails, and JSON5 is not tried


def test_invalid_turns_say_which_part_failed():
    assert parse_turn("<tool_call>{nope</tool_call>").where == "tool_call"
    assert parse_turn("<answer>[1]</answer>").where == "answer"
    assert parse_turn("prose").where == "format"


def test_blocks_are_found_by_a_linear_scan():
    turn = parse_turn('<tool_call>{"name": "s"}</tool_call>' * 3 + "<tool_call>" * 20_000)
    assert isinstance(turn, ToolCallTurn) and turn.ignored_calls == 2  # the unclosed openings are no calls
