"""System prompts: ours (package data) or one the user supplies, rendered strictly.

A prompt file may use the placeholders {{date}}, {{tools}}, {{max_refs}} and {{max_tool_calls}};
an unknown placeholder is an error rather than a silent blank.

`import_reference_prompt` reads the reference system's original prompt out of the user's own checkout of
the Gen-Searcher repository, by parsing its Python source (never executing it), for exact reproduction.
We do not ship that text.
"""

from __future__ import annotations

import ast
import re
from importlib import resources
from pathlib import Path

from gensearcher.errors import UserError

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
PLACEHOLDERS = ("date", "tools", "max_refs", "max_tool_calls")
REFERENCE_AGENT_FILE = (
    "Gen-DeepResearch-RL/rllm/vision_deepresearch_async_workflow/gen_image_deepresearch_agent.py"
)
REFERENCE_PROMPT_NAME = "SYSTEM_PROMPT_GEN_IMAGE"

FINAL_ROUND_MESSAGE = (
    "FINAL STEP. No more tool calls are possible. Reply now with only the answer, using image ids you "
    'have already seen: <answer>{"gen_prompt": "...", "reference_images": [{"img_id": "IMG_###", '
    '"note": "..."}]}</answer>'
)
TOO_LONG_MESSAGE = (
    "RESPONSE TOO LONG: your reply was cut off at the token limit. Do not write <think>. Reply with only "
    "one <tool_call>{...}</tool_call> or one <answer>{...}</answer>, kept short."
)
FORMAT_MESSAGE = (
    "Your reply could not be used: {problem}. Reply with <think>...</think> followed by exactly one "
    "<tool_call>{{\"name\": ..., \"arguments\": {{...}}}}</tool_call> or one <answer>{{...}}</answer>."
)


def default_system_template() -> str:
    return resources.files("gensearcher.agent").joinpath("prompts/system.md").read_text(encoding="utf-8")


def load_system_template(path: Path | None) -> str:
    if path is None:
        return default_system_template()
    if not path.is_file():
        raise UserError(f"system prompt file not found: {path}")
    text = path.read_text(encoding="utf-8")
    render_system_prompt(text, date="", tools="", max_refs=0, max_tool_calls=0)  # fail early on typos
    return text


def render_system_prompt(template: str, *, date: str, tools: str, max_refs: int, max_tool_calls: int) -> str:
    values = {"date": date, "tools": tools, "max_refs": str(max_refs), "max_tool_calls": str(max_tool_calls)}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise UserError(f"unknown placeholder {{{{{name}}}}} in the system prompt; known: {', '.join(PLACEHOLDERS)}")
        return values[name]

    return _PLACEHOLDER.sub(substitute, template)


def import_reference_prompt(path: Path) -> str:
    """Return the reference prompt as a template: the original text followed by {{date}}.

    `path` is the Gen-Searcher checkout or the agent file itself. The reference system appends the date
    directly after its prompt; the template reproduces that.
    """
    source_file = path / REFERENCE_AGENT_FILE if path.is_dir() else path
    if not source_file.is_file():
        raise UserError(f"cannot find the reference agent file at {source_file}")
    try:
        tree = ast.parse(source_file.read_text(encoding="utf-8"), filename=str(source_file))
    except SyntaxError as exc:
        raise UserError(f"cannot parse {source_file}: {exc}") from None
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == REFERENCE_PROMPT_NAME for t in targets) and node.value is not None:
            try:
                text = ast.literal_eval(node.value)
            except ValueError:
                raise UserError(f"{REFERENCE_PROMPT_NAME} in {source_file} is not a plain string literal") from None
            if not isinstance(text, str):
                raise UserError(f"{REFERENCE_PROMPT_NAME} in {source_file} is not a string")
            if _PLACEHOLDER.search(text):
                raise UserError(f"{REFERENCE_PROMPT_NAME} contains '{{{{...}}}}', which clashes with placeholders")
            return text + "{{date}}"
    raise UserError(f"{REFERENCE_PROMPT_NAME} not found in {source_file}")
