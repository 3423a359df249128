"""Reading the policy's turns: `<think>`, `<tool_call>` and `<answer>` (the Gen-Searcher-8B protocol).

A turn is parsed into one of three actions. Nothing here raises on bad model output: a problem becomes
an `InvalidTurn` whose `problem` is shown to the model so it can correct itself.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import json5
from pydantic import BaseModel

TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
_TOOL_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.S)
_CODE_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


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


Turn = ToolCallTurn | AnswerTurn | InvalidTurn


def strip_hallucinated_observation(text: str) -> str:
    """Cut a turn where the model starts writing a tool response itself: that text is not its to write."""
    index = text.find("<tool_response>")
    return (text[:index] if index >= 0 else text).strip()


def parse_turn(text: str, *, final_round: bool = False) -> Turn:
    """Parse one assistant turn.

    In the final round tool calls are impossible, so an answer is taken even if a tool call surrounds it.
    """
    tool_blocks = _TOOL_BLOCK.findall(text)
    answer_blocks = _ANSWER_BLOCK.findall(text)
    if final_round and answer_blocks:
        return _parse_answer(answer_blocks[0])
    if tool_blocks and answer_blocks:
        return InvalidTurn(problem="the reply holds both a <tool_call> and an <answer>; write only one of them")
    if tool_blocks:
        return _parse_tool_call(tool_blocks[0], ignored=len(tool_blocks) - 1)
    if answer_blocks:
        return _parse_answer(answer_blocks[0])
    if TOOL_OPEN in text:
        return InvalidTurn(problem="the <tool_call> block is not closed with </tool_call>")
    if ANSWER_OPEN in text:
        return InvalidTurn(problem="the <answer> block is not closed with </answer>")
    return InvalidTurn(problem="the reply holds neither a <tool_call> nor an <answer>")


def _parse_tool_call(block: str, *, ignored: int) -> Turn:
    try:
        obj = loads_lenient(block)
    except ValueError as exc:
        return InvalidTurn(problem=f"the <tool_call> content is not valid JSON ({exc})")
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"].strip():
        return InvalidTurn(problem='the <tool_call> must be a JSON object like {"name": ..., "arguments": {...}}')
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):  # OpenAI-style: arguments as a JSON string
        try:
            arguments = loads_lenient(arguments)
        except ValueError:
            return InvalidTurn(problem="the tool call's arguments are a string that is not valid JSON")
    return ToolCallTurn(name=obj["name"].strip(), arguments=arguments if arguments is not None else {}, ignored_calls=ignored)


def _parse_answer(block: str) -> Turn:
    try:
        obj = loads_lenient(block)
    except ValueError as exc:
        return InvalidTurn(problem=f"the <answer> content is not valid JSON ({exc})")
    if not isinstance(obj, dict):
        return InvalidTurn(problem='the <answer> must be a JSON object with "gen_prompt" and "reference_images"')
    return AnswerTurn(payload=obj)


def loads_lenient(text: str) -> Any:
    """Parse JSON the way a careful reader would: strict first, then JSON5, then the outermost object.

    Raises ValueError with a short reason when nothing works.
    """
    candidate = _CODE_FENCE.sub("", text.strip())
    attempts = [candidate]
    start, end = candidate.find("{"), candidate.rfind("}")
    if 0 < start < end or (start == 0 and end < len(candidate) - 1):
        attempts.append(candidate[start : end + 1])  # prose around the object
    first_error: ValueError | None = None
    for attempt in attempts:
        for loader in (json.loads, json5.loads):
            try:
                return loader(attempt)
            except ValueError as exc:
                first_error = first_error or exc
    reason = str(first_error).split(":")[0] if first_error else "empty"
    raise ValueError(reason)
