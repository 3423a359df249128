"""Building scripted policy turns in the Gen-Searcher-8B protocol."""

from __future__ import annotations

import json
from typing import Any


def call(name: str, **arguments: Any) -> str:
    body = json.dumps({"name": name, "arguments": arguments})
    return f"<think>I need {name}.</think>\n<tool_call>\n{body}\n</tool_call>"


def answer(gen_prompt: str = "A photo of the subject in the first reference image.", *refs: str) -> str:
    body = json.dumps({"gen_prompt": gen_prompt, "reference_images": [{"img_id": r, "note": f"use {r}"} for r in refs]})
    return f"<think>Enough.</think>\n<answer>{body}</answer>"


def user_texts(request: dict[str, Any]) -> list[str]:
    """The text of every user message in a chat request, in order."""
    out = []
    for message in request["messages"]:
        if message["role"] != "user":
            continue
        content = message["content"]
        out.append(content if isinstance(content, str) else "".join(p.get("text", "") for p in content))
    return out


def image_parts(message: dict[str, Any]) -> list[str]:
    content = message["content"]
    return [] if isinstance(content, str) else [p["image_url"]["url"] for p in content if p["type"] == "image_url"]
