"""The fixed texts the policy sees, and how observations are framed: ours, or the reference system's.

Ours: the system prompt (package data, placeholders {{date}}, {{tools}}, {{max_refs}}, {{max_tool_calls}};
an unknown placeholder is an error rather than a silent blank) and the fixed messages below; every problem
reaches the model inside <tool_response>, with the reason.

The reference system's: `import_reference_texts` reads its system prompt, final-step, too-long and
format-error messages, and the KnowGen and text-reward judge rubrics out of the user's own checkout of the
Gen-Searcher repository. The Python source is parsed with `ast` and only string literals are taken: nothing
of it is executed, and none of its text ships with gensearcher. `ReferenceTexts` stores them in one JSON
file (`Settings.reference_texts` points at it); with them loaded, `Framing` puts every text to the model the
way the reference agent does, so the released model sees its training setting token for token.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from gensearcher.errors import UserError
from gensearcher.messages import ImageRef, Message

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
PLACEHOLDERS = ("date", "tools", "max_refs", "max_tool_calls")

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

# Where the reference checkout keeps each text (relative to its root), and under which name.
REFERENCE_AGENT_FILE = "Gen-DeepResearch-RL/rllm/vision_deepresearch_async_workflow/gen_image_deepresearch_agent.py"
REFERENCE_REWARD_FILE = "Gen-DeepResearch-RL/rllm/vision_deepresearch_async_workflow/gen_image_deepresearch_reward.py"
REFERENCE_KNOWGEN_FILE = "KnowGen_Eval/gpt_eval_knowgen.py"
REFERENCE_PROMPT_NAME = "SYSTEM_PROMPT_GEN_IMAGE"
# The reference agent wraps an exception of a tool call in this tag inside <tool_response>.
REFERENCE_TOOL_ERROR = "[Tool Error]: "
_MAX_SOURCE_BYTES = 4_000_000


# -- our system prompt -------------------------------------------------------------------------------


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


# -- the reference system's texts ---------------------------------------------------------------------


class ReferenceTexts(BaseModel):
    """The reference system's fixed texts, imported from the user's own checkout (never shipped)."""

    format: str = Field(default="gensearcher-reference-texts", description="Marks the file's kind.")
    schema_version: int = Field(default=1, description="Version of this file's layout.")
    source: str = Field(description="The checkout the texts were read from.")
    commit: str | None = Field(default=None, description="The checkout's git commit, when it could be read.")
    files: dict[str, str] = Field(description="sha256 of each source file read, by path within the checkout.")
    system_prompt: str = Field(description="The agent's system prompt; the reference appends the date to it directly.")
    final_message: str = Field(description="The user turn that asks for the answer after the last round.")
    too_long_message: str = Field(description="The user turn after a reply cut off at the token limit.")
    format_error_message: str = Field(description="The user turn after a reply with neither a tool call nor an answer.")
    knowgen_rubric: str = Field(description="The KnowGen judge's system prompt (also the image reward's).")
    text_reward_rubric: str = Field(description="The text-reward judge's system prompt.")

    def rubrics(self) -> dict[str, str]:
        """The judge rubrics by judge kind (`Judge(rubrics=...)`)."""
        return {"knowgen": self.knowgen_rubric, "text": self.text_reward_rubric}

    def digest(self) -> str:
        """sha256 of the texts, recorded with a run so it names exactly what the model saw."""
        texts = (self.system_prompt, self.final_message, self.too_long_message, self.format_error_message,
                 self.knowgen_rubric, self.text_reward_rubric)
        return hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()

    def save(self, path: Path) -> None:
        from gensearcher._files import write_atomic

        write_atomic(path, self.model_dump_json(indent=1).encode("utf-8"))


def load_reference_texts(path: Path) -> ReferenceTexts:
    """Read a file written by `gensearcher prompts import-reference`."""
    if not path.is_file():
        raise UserError(f"reference texts file not found: {path} (write it with: gensearcher prompts import-reference)")
    try:
        texts = ReferenceTexts.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "file"
        raise UserError(f"{path} is not a reference texts file ({where}: {first['msg']})") from None
    if texts.format != "gensearcher-reference-texts" or texts.schema_version != 1:
        raise UserError(f"{path}: unsupported reference texts file ({texts.format} v{texts.schema_version})")
    return texts


def judge_rubrics(reference_texts: Path | None, overrides: dict[str, str] | None = None) -> dict[str, str] | None:
    """The rubrics a judge uses besides ours: the reference's (when configured), then explicit overrides."""
    rubrics = load_reference_texts(reference_texts).rubrics() if reference_texts is not None else {}
    rubrics.update(overrides or {})
    return rubrics or None


def import_reference_texts(checkout: Path) -> ReferenceTexts:
    """Read every fixed text of the reference system from a checkout of its repository.

    Parsed, never executed: a module-level string constant (implicitly concatenated, joined with `+` or
    followed by `.strip()`), or, for the too-long and format-error messages, the strings the agent assigns
    to `observation` in the two branches of its `if finish_reason == "length"`. Anything that is not a
    plain string (an f-string, a call) is refused with the place it was found.
    """
    if not checkout.is_dir():
        raise UserError(f"not a folder: {checkout} (give the root of your Gen-Searcher checkout)")
    sources = _Sources(checkout)
    agent = sources.tree(REFERENCE_AGENT_FILE)
    reward = sources.tree(REFERENCE_REWARD_FILE)
    knowgen = sources.tree(REFERENCE_KNOWGEN_FILE, required=False)
    agent_path = sources.path(REFERENCE_AGENT_FILE)
    system_prompt = _constant(agent, REFERENCE_PROMPT_NAME, agent_path)
    final_message = _constant(agent, "FINAL_MESSAGE", agent_path)
    too_long, format_error = _truncation_branches(agent, agent_path)
    rubric = (_constant(knowgen, "SYSTEM_PROMPT", sources.path(REFERENCE_KNOWGEN_FILE)) if knowgen is not None
              else _constant(reward, "WORLDGEN_SYSTEM_PROMPT", sources.path(REFERENCE_REWARD_FILE)))
    return ReferenceTexts(
        source=str(checkout.resolve()),
        commit=_git_commit(checkout),
        files=sources.hashes,
        system_prompt=system_prompt,
        final_message=final_message,
        too_long_message=too_long,
        format_error_message=format_error,
        knowgen_rubric=rubric,
        text_reward_rubric=_constant(reward, "TEXT_REWARD_SYSTEM_PROMPT", sources.path(REFERENCE_REWARD_FILE)),
    )


class _Sources:
    """The checkout's files, parsed once each; their hashes are kept for the record."""

    def __init__(self, root: Path):
        self.root = root
        self.hashes: dict[str, str] = {}

    def path(self, relative: str) -> Path:
        return self.root / relative

    def tree(self, relative: str, *, required: bool = True) -> ast.Module | None:
        path = self.path(relative)
        if not path.is_file():
            if required:
                raise UserError(f"cannot find {relative} in {self.root} (is it a Gen-Searcher checkout?)")
            return None
        if path.stat().st_size > _MAX_SOURCE_BYTES:
            raise UserError(f"{path} is larger than {_MAX_SOURCE_BYTES} bytes; not a source file of the reference")
        data = path.read_bytes()
        self.hashes[relative] = hashlib.sha256(data).hexdigest()
        try:
            return ast.parse(data.decode("utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, RecursionError, ValueError) as exc:
            raise UserError(f"cannot parse {path}: {type(exc).__name__}: {exc}") from None


def _constant(tree: ast.Module | None, name: str, path: Path) -> str:
    """A module-level string constant; the last assignment wins, as when the module runs."""
    value: ast.expr | None = None
    assigned: ast.expr | None
    for node in tree.body if tree is not None else []:
        if isinstance(node, ast.Assign):
            targets, assigned = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, assigned = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            value = assigned
    if value is None:
        raise UserError(f"{name} not found at module level in {path}")
    return _string(value, f"{name} in {path}")


def _truncation_branches(tree: ast.Module | None, path: Path) -> tuple[str, str]:
    """The `observation` strings of `if finish_reason == "length": ... else: ...` (too long, format error)."""
    for node in ast.walk(tree) if tree is not None else []:
        if isinstance(node, ast.If) and node.orelse and _tests_length(node.test):
            too_long = _assigned(node.body, "observation")
            format_error = _assigned(node.orelse, "observation")
            if too_long is not None and format_error is not None:
                where = f"'observation' under 'if finish_reason == \"length\"' (line {node.lineno}) in {path}"
                return _string(too_long, where), _string(format_error, where)
    raise UserError(f"no 'if finish_reason == \"length\"' assigning 'observation' in both branches found in {path}")


def _tests_length(test: ast.expr) -> bool:
    names = {n.id for n in ast.walk(test) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(test) if isinstance(n, ast.Attribute)}
    constants = {n.value for n in ast.walk(test) if isinstance(n, ast.Constant)}
    return "finish_reason" in names and "length" in constants


def _assigned(statements: list[ast.stmt], name: str) -> ast.expr | None:
    """The value last assigned (in source order) to `name` in these statements, nested functions aside."""
    found: tuple[int, ast.expr] | None = None
    pending = list(statements)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
                and (found is None or node.lineno > found[0])):
            found = (node.lineno, node.value)
        pending.extend(child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt))
    return found[1] if found else None


_STRING_METHODS: dict[str, Callable[[str], str]] = {"strip": str.strip, "lstrip": str.lstrip, "rstrip": str.rstrip}


def _string(node: ast.expr, where: str) -> str:
    """The value of a plain string expression, computed from the syntax tree alone."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _string(node.left, where) + _string(node.right, where)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _STRING_METHODS
            and not node.args and not node.keywords):
        return _STRING_METHODS[node.func.attr](_string(node.func.value, where))
    raise UserError(f"{where} is not a plain string ({type(node).__name__}); it cannot be read without running it")


def _git_commit(checkout: Path) -> str | None:
    """The checked-out commit, read from .git without running git (a missing or odd .git gives None)."""
    git = checkout / ".git"
    try:
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref: "):
            return head if re.fullmatch(r"[0-9a-f]{40}", head) else None
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text(encoding="utf-8").strip()
        for line in (git / "packed-refs").read_text(encoding="utf-8").splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0]
    except OSError:
        return None
    return None


# -- framing -------------------------------------------------------------------------------------------


class Framing:
    """How the fixed texts and the observations are put to the model.

    Without reference texts: ours (every problem inside <tool_response>, with the reason). With them:
    exactly the reference agent's (system prompt + date; a format error, a too-long notice and the final
    step as plain user turns of its own words; a failed tool call as a tool error; no note about ignored
    extra tool calls). What the reference has no text for (our answer feedback, a rejected answer before
    the last round) keeps our words inside <tool_response>.
    """

    def __init__(self, reference: ReferenceTexts | None = None):
        self.reference = reference

    def system_prompt(self, template: str, *, date: str, tools: str, max_refs: int, max_tool_calls: int) -> str:
        if self.reference is not None:
            return self.reference.system_prompt + date
        return render_system_prompt(template, date=date, tools=tools, max_refs=max_refs, max_tool_calls=max_tool_calls)

    def final_round(self) -> Message:
        return Message(role="user", text=self.reference.final_message if self.reference else FINAL_ROUND_MESSAGE)

    def tool_response(self, text: str, images: list[ImageRef] | None = None) -> Message:
        return Message(role="user", text=f"<tool_response>\n{text}\n</tool_response>", images=images or [])

    def tool_error(self, problem: str) -> Message:
        """A tool call that could not be read or handled."""
        if self.reference is not None:
            return self.tool_response(REFERENCE_TOOL_ERROR + problem)
        return self.tool_response(FORMAT_MESSAGE.format(problem=problem))

    def invalid_turn(self, problem: str, *, where: str, truncated: bool) -> Message:
        """A reply that could not be used. `where`: 'format', 'tool_call' or 'answer' (see InvalidTurn)."""
        if self.reference is None:
            return self.tool_response(TOO_LONG_MESSAGE if truncated else FORMAT_MESSAGE.format(problem=problem))
        if where == "tool_call":  # the reference runs any closed <tool_call>, cut off or not
            return self.tool_error(problem)
        if where == "answer":
            return self.answer_rejected(problem)
        text = self.reference.too_long_message if truncated else self.reference.format_error_message
        return Message(role="user", text=text)

    def answer_rejected(self, problem: str) -> Message:
        return self.tool_response(f"The answer was not accepted: {problem}. Fix it and answer again.")

    def ignored_calls_note(self, count: int) -> str:
        if self.reference is not None or not count:
            return ""
        return f"\n(Only the first tool call of your reply was run; {count} more were ignored.)"
