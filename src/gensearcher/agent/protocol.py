"""Reading the policy's turns: `<think>`, `<tool_call>` and `<answer>` (the Gen-Searcher-8B protocol).

A turn is parsed into one of three actions. Nothing here raises on bad model output: a problem becomes
an `InvalidTurn` whose `problem` is shown to the model so it can correct itself.

Model output is hostile input (a web page the model read can steer what it writes), so every step here
is bounded: blocks are found by linear scans, JSON bodies are limited in size and nesting depth before
they are parsed, the slow pure-Python JSON5 reader only sees small bodies, and parsed numbers must fit
in 64 bits (Python cannot even print an integer of more than 4,300 digits, so one in a trajectory would
break writing it).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import json5
from pydantic import BaseModel

TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"

# Far above any real tool call or answer (a turn is capped at a few thousand tokens), far below a cost.
MAX_JSON_CHARS = 100_000
# json5 is pure Python: about 1 s of CPU per 8 KB of a number-heavy body, on the event loop.
MAX_JSON5_CHARS = 8_000
MAX_JSON_DEPTH = 32
MAX_JSON_INT = 2**63


class ToolCallTurn(BaseModel):
    kind: Literal["tool_call"] = "tool_call"
    name: str
    arguments: Any
    ignored_calls: int = 0  # further <tool_call> blocks in the same turn, not executed


class AnswerTurn(BaseModel):
    kind: Literal["answer"] = "answer"
    payload: dict[str, Any]


class InvalidTurn(BaseModel):
    kind: Literal["invalid"] = "invalid"
    problem: str
    # Which part failed: the reply's shape, a <tool_call> body or an <answer> body (framed differently).
    where: Literal["format", "tool_call", "answer"] = "format"


Turn = ToolCallTurn | AnswerTurn | InvalidTurn


def strip_hallucinated_observation(text: str) -> str:
    """Cut a turn where the model starts writing a tool response itself: that text is not its to write."""
    index = text.find("<tool_response>")
    return (text[:index] if index >= 0 else text).strip()


def parse_turn(text: str, *, final_round: bool = False) -> Turn:
    """Parse one assistant turn.

    In the final round tool calls are impossible, so an answer is taken even if a tool call surrounds it.
    """
    tool_blocks, tool_unclosed = _blocks(text, TOOL_OPEN, TOOL_CLOSE)
    answer_blocks, answer_unclosed = _blocks(text, ANSWER_OPEN, ANSWER_CLOSE)
    if final_round and answer_blocks:
        return _parse_answer(answer_blocks[0])
    if tool_blocks and answer_blocks:
        return InvalidTurn(problem="the reply holds both a <tool_call> and an <answer>; write only one of them")
    if tool_blocks:
        return _parse_tool_call(tool_blocks[0], ignored=len(tool_blocks) - 1)
    if answer_blocks:
        return _parse_answer(answer_blocks[0])
    if tool_unclosed:
        return InvalidTurn(problem="the <tool_call> block is not closed with </tool_call>")
    if answer_unclosed:
        return InvalidTurn(problem="the <answer> block is not closed with </answer>")
    return InvalidTurn(problem="the reply holds neither a <tool_call> nor an <answer>")


def _blocks(text: str, open_tag: str, close_tag: str) -> tuple[list[str], bool]:
    """The bodies of the closed blocks, in order, and whether an opening tag was left unclosed.

    str.find scans, not a regex: `<tool_call>(.*?)</tool_call>` rescans the rest of the text for every
    unclosed opening, which is quadratic on a reply made of openings.
    """
    bodies: list[str] = []
    position = 0
    while (start := text.find(open_tag, position)) >= 0:
        end = text.find(close_tag, start + len(open_tag))
        if end < 0:
            return bodies, True
        bodies.append(text[start + len(open_tag) : end])
        position = end + len(close_tag)
    return bodies, False


def _parse_tool_call(block: str, *, ignored: int) -> Turn:
    try:
        obj = loads_lenient(block)
    except ValueError as exc:
        return InvalidTurn(problem=f"the <tool_call> content is not valid JSON ({exc})", where="tool_call")
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"].strip():
        return InvalidTurn(problem='the <tool_call> must be a JSON object like {"name": ..., "arguments": {...}}',
                           where="tool_call")
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):  # OpenAI-style: arguments as a JSON string
        try:
            arguments = loads_lenient(arguments)
        except ValueError as exc:
            return InvalidTurn(problem=f"the tool call's arguments are a string that is not valid JSON ({exc})",
                               where="tool_call")
    return ToolCallTurn(name=obj["name"].strip(), arguments=arguments if arguments is not None else {}, ignored_calls=ignored)


def _parse_answer(block: str) -> Turn:
    try:
        obj = loads_lenient(block)
    except ValueError as exc:
        return InvalidTurn(problem=f"the <answer> content is not valid JSON ({exc})", where="answer")
    if not isinstance(obj, dict):
        return InvalidTurn(problem='the <answer> must be a JSON object with "gen_prompt" and "reference_images"',
                           where="answer")
    return AnswerTurn(payload=obj)


def loads_lenient(text: str) -> Any:
    """Parse JSON the way a careful reader would: strict first, then JSON5, then the outermost object.

    Raises ValueError with a short reason when nothing works, and for a body that is too large, too
    deeply nested, or holds an integer beyond 64 bits (whatever the parser would have made of it).
    """
    candidate = _strip_code_fence(text.strip())
    if len(candidate) > MAX_JSON_CHARS:
        raise ValueError(f"{len(candidate)} characters; at most {MAX_JSON_CHARS} are read")
    _check_nesting(candidate)
    attempts = [candidate]
    start, end = candidate.find("{"), candidate.rfind("}")
    if 0 < start < end or (start == 0 and end < len(candidate) - 1):
        attempts.append(candidate[start : end + 1])  # prose around the object
    first_error: str | None = None
    for attempt in attempts:
        for loader in (json.loads, json5.loads):
            if loader is json5.loads and len(attempt) > MAX_JSON5_CHARS:
                continue
            try:
                value = loader(attempt)
            except RecursionError:
                raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep") from None
            except Exception as exc:  # noqa: BLE001 - json5 raises more than ValueError on some inputs
                first_error = first_error or str(exc).split(":")[0][:200]
                continue
            _check_values(value)
            return value
    raise ValueError(first_error or "empty")


def _strip_code_fence(text: str) -> str:
    """Drop a Markdown code fence around the body (```json ... ```), without a backtracking regex."""
    if text.startswith("```"):
        text = text[3:]
        if text[:4].lower() == "json":
            text = text[4:]
    text = text.removesuffix("```")
    return text.strip()


def _check_nesting(text: str) -> None:
    """Refuse a body nested deeper than MAX_JSON_DEPTH before any parser recurses into it.

    Brackets inside double-quoted strings do not count. A single-quoted JSON5 string is not recognised,
    so brackets in one may count: that errs towards refusing, never towards recursing.
    """
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
        elif char in "]}":
            depth = max(0, depth - 1)


def _check_values(value: Any) -> None:
    """Walk a parsed value (iteratively): bounded depth, integers within 64 bits.

    Infinity and NaN are kept: the tools refuse non-finite numbers with a message naming the argument.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and not -MAX_JSON_INT <= item <= MAX_JSON_INT:
            raise ValueError("a number is too large")
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
