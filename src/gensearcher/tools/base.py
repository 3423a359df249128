"""The tool protocol shared by the prompt and the executor.

The three tools, their names and their argument names are fixed by the Gen-Searcher-8B protocol:
`search(queries, top_k)`, `image_search(query, top_k)`, `browse(url, query)`. Each has a pydantic
argument model; the same model renders the JSON schema in the system prompt and validates what the
policy sends, so the two can never disagree. Arguments outside the schema are rejected (the reference
system let the model choose a `save_dir`), except the few spellings the reference executor also accepts
(`search.query`, `browse.goal`, a list `browse.url`): those are mapped onto the schema and noted, so the
released model's habits cost no round, while the prompt keeps showing the canonical schemas.

An implementation is any async function `(args) -> ToolResult`; a `Toolbox` pairs specs with
implementations and turns every failure into a `ToolResult` with `error` set, never an exception.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from gensearcher.data.records import ImageInfo
from gensearcher.errors import ToolError

logger = logging.getLogger(__name__)

TOP_K_MAX = 10
# Tools whose deadline passes only while the search API keeps them waiting (image_search's downloads each
# have the fetcher's shorter deadline); browse waits on the page the model chose, which may just be slow.
_WAITS_ON_THE_API = frozenset({"search", "image_search"})


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @classmethod
    def normalise(cls, arguments: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Map the spellings the reference executor also accepts onto the schema's names.

        Returns the arguments to validate and one note per change (recorded, never shown as an error).
        Only the listed spellings are mapped; anything else outside the schema stays an error.
        """
        return arguments, []


_INTEGER_TEXT = re.compile(r"\s*-?[0-9]{1,12}\s*", re.ASCII)
MAX_TEXT_CHARS = 2_000  # a query or goal; longer ones are pasted pages, not queries
MAX_URL_CHARS = 8_192


def _clamp_top_k(value: Any) -> Any:
    """Clamp a count into range. Model output is untrusted: Infinity, NaN and 4,300-digit strings would
    make int() raise OverflowError or ValueError; they become a validation error naming top_k instead."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
        value = int(value)
    if isinstance(value, (int, float)):
        return max(1, min(TOP_K_MAX, int(value)))
    return value


def _bounded_text(value: str, limit: int = MAX_TEXT_CHARS) -> str:
    if len(value) > limit:
        raise ValueError(f"{len(value)} characters; at most {limit}")
    return value


# top_k is clamped into range rather than rejected: the model may ask for 50 results.
TopK = Annotated[int, BeforeValidator(_clamp_top_k)]
# Length limits live in validators, not in the schema, so the schemas in the prompt stay the protocol's.
Text = Annotated[str, AfterValidator(_bounded_text)]
Url = Annotated[str, AfterValidator(lambda value: _bounded_text(value, MAX_URL_CHARS))]


class SearchArgs(_Args):
    queries: list[Text] = Field(
        ..., min_length=1, max_length=10, description="One or more web search queries, run together."
    )
    top_k: TopK = Field(5, description=f"Results per query (1-{TOP_K_MAX}).")

    @classmethod
    def normalise(cls, arguments: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        # The reference executor reads `queries` or else `query`, each a string or a list.
        return _rename(arguments, "query", "queries")

    @field_validator("queries", mode="before")
    @classmethod
    def _one_query_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("queries")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        cleaned = [query.strip() for query in value if query.strip()]
        if not cleaned:
            raise ValueError("at least one non-empty query is required")
        return cleaned


class ImageSearchArgs(_Args):
    query: Text = Field(..., min_length=1, description="What the pictures should show; short queries work best.")
    top_k: TopK = Field(5, description=f"Number of images (1-{TOP_K_MAX}).")


class BrowseArgs(_Args):
    url: Url = Field(..., min_length=1, description="The page to read (http or https).")
    query: Text = Field(..., min_length=1, description="What to look for on the page.")

    @classmethod
    def normalise(cls, arguments: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        # The reference executor reads `goal` for the question and takes a list of URLs; we read the first.
        arguments, notes = _rename(arguments, "goal", "query")
        url = arguments.get("url")
        if isinstance(url, list) and url and isinstance(url[0], str):
            arguments = {**arguments, "url": url[0]}
            rest = f"; the other {len(url) - 1} were not read" if len(url) > 1 else ""
            notes.append(f"url: a list of {len(url)}, the first was read{rest}")
        return arguments, notes


def _rename(arguments: dict[str, Any], alias: str, name: str) -> tuple[dict[str, Any], list[str]]:
    if alias not in arguments:
        return arguments, []
    renamed = {key: value for key, value in arguments.items() if key != alias}
    if name in arguments:
        return renamed, [f"{alias}: ignored, {name} was given"]
    renamed[name] = arguments[alias]
    return renamed, [f"{alias}: read as {name}"]


ImageHit = ImageInfo
"""One image returned by image_search, already downloaded and validated (`local_path` set)."""


class WebHit(BaseModel):
    """One web search result."""

    title: str
    url: str
    snippet: str = ""
    date: str | None = None


class ImageCandidate(BaseModel):
    """One image search result before download: a URL (or a local file) to fetch and validate."""

    image_url: str
    page_url: str | None = None
    title: str | None = None
    local_path: str | None = None


class SearchBackend(Protocol):
    """A search provider. `used` collects the cache keys of the calls made (for the trajectory)."""

    name: str

    async def search(self, query: str, top_k: int, used: list[str]) -> list[WebHit]: ...

    async def images(self, query: str, count: int, used: list[str]) -> list[ImageCandidate]: ...


class ToolResult(BaseModel):
    """What a tool returns. `text` always reaches the model; `error` marks a failed call."""

    text: str = ""
    images: list[ImageHit] = []
    error: str | None = None
    cache_keys: list[str] = []
    # A service the call depends on failed (see ToolError.outage), not the model's doing: the error, or a
    # degraded answer without one (browse's raw extract when the summariser is down).
    outage: bool = False


class ToolSpec(BaseModel):
    name: str
    description: str
    args_model: type[_Args]

    def json_schema(self) -> dict[str, Any]:
        """The function schema shown to the policy (OpenAI function format, titles stripped)."""
        schema = self.args_model.model_json_schema()
        properties = {
            name: {key: value for key, value in prop.items() if key != "title"}
            for name, prop in schema.get("properties", {}).items()
        }
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {"type": "object", "properties": properties, "required": schema.get("required", [])},
            },
        }


SEARCH = ToolSpec(
    name="search",
    description="Web search. Returns title, url and snippet of the top results for each query.",
    args_model=SearchArgs,
)
IMAGE_SEARCH = ToolSpec(
    name="image_search",
    description="Image search. Returns pictures with their ids (IMG_###), titles and source pages; "
    "the first few are attached so you can look at them.",
    args_model=ImageSearchArgs,
)
BROWSE = ToolSpec(
    name="browse",
    description="Read one web page and report what it says about `query`.",
    args_model=BrowseArgs,
)
PROTOCOL_TOOLS: dict[str, ToolSpec] = {spec.name: spec for spec in (SEARCH, IMAGE_SEARCH, BROWSE)}

ToolFn = Callable[[Any], Awaitable[ToolResult]]


class ToolCallOutcome(BaseModel):
    """The result of one call as the agent records it."""

    result: ToolResult
    duration_s: float
    arguments: dict[str, Any] = {}  # as validated and run (also when the tool then failed); empty if it never ran
    normalised: list[str] = []  # spellings of the reference executor mapped onto the schema (see _Args.normalise)


class Toolbox:
    """The tools one agent may call: protocol specs paired with implementations."""

    def __init__(self, implementations: Mapping[str, ToolFn], *, timeout_s: float = 120.0,
                 redact: Callable[[str], str] | None = None):
        unknown = set(implementations) - set(PROTOCOL_TOOLS)
        if unknown:
            raise ValueError(f"not protocol tools: {sorted(unknown)}; expected some of {sorted(PROTOCOL_TOOLS)}")
        self._impls = dict(implementations)
        self.timeout_s = timeout_s
        # Applied to every observation: error texts of remote parties may echo a configured secret.
        self._redact = redact or (lambda text: text)
        self._schemas: str | None = None

    @property
    def specs(self) -> list[ToolSpec]:
        return [spec for name, spec in PROTOCOL_TOOLS.items() if name in self._impls]

    def schemas_json(self) -> str:
        """One JSON schema per line, the way the tool block of the system prompt lists them."""
        if self._schemas is None:  # every agent built over this toolbox asks (a GRPO step builds dozens)
            self._schemas = "\n".join(json.dumps(spec.json_schema(), ensure_ascii=False) for spec in self.specs)
        return self._schemas

    async def call(self, name: str, arguments: Any) -> ToolCallOutcome:
        """Validate and run one call. Never raises: every failure comes back as `result.error`."""
        started = time.monotonic()

        def failed(message: str, ran: _Args | None = None, notes: list[str] | None = None, *,
                   outage: bool = False) -> ToolCallOutcome:
            message = self._redact(message)
            result = ToolResult(text=message, error=message, outage=outage)
            return ToolCallOutcome(result=result, duration_s=time.monotonic() - started,
                                   arguments=ran.model_dump() if ran is not None else {}, normalised=notes or [])

        if name not in self._impls:
            available = ", ".join(spec.name for spec in self.specs)
            return failed(f"Error: there is no tool named {_shorten(name)!r}. Available tools: {available}.")
        spec = PROTOCOL_TOOLS[name]
        if not isinstance(arguments, dict):
            return failed(f"Error: the arguments of {name} must be a JSON object.")
        try:
            arguments, notes = spec.args_model.normalise(arguments)
            args = spec.args_model.model_validate(arguments)
        except ValidationError as exc:
            return failed(f"Error: invalid arguments for {name}: {_describe(exc)}. Expected: {_signature(spec)}.")
        except Exception as exc:  # noqa: BLE001 - model output must never escape (OverflowError, RecursionError)
            logger.warning("validating %s arguments raised %s", name, type(exc).__name__)
            return failed(f"Error: invalid arguments for {name} ({type(exc).__name__}). Expected: {_signature(spec)}.")
        try:
            result = await asyncio.wait_for(self._impls[name](args), timeout=self.timeout_s)
        except TimeoutError:
            return failed(f"Error: {name} did not finish within {self.timeout_s:g} s. Try again or change approach.",
                          args, notes, outage=name in _WAITS_ON_THE_API)
        except ToolError as exc:
            return failed(f"Error: {name} failed: {exc}", args, notes, outage=exc.outage)
        except Exception as exc:  # a bug in a tool must not end the trajectory
            logger.exception("tool %s crashed", name)
            return failed(f"Error: {name} failed with an internal error ({type(exc).__name__}).", args, notes)
        result = result.model_copy(update={"text": self._redact(result.text),
                                           "error": self._redact(result.error) if result.error else result.error})
        return ToolCallOutcome(
            result=result, duration_s=time.monotonic() - started, arguments=args.model_dump(), normalised=notes
        )


def _describe(exc: ValidationError, *, most: int = 5) -> str:
    errors = exc.errors()
    parts = []
    for error in errors[:most]:
        where = ".".join(_shorten(str(part)) for part in error["loc"]) or "arguments"
        message = "not an allowed argument" if error["type"] == "extra_forbidden" else error["msg"]
        parts.append(f"{where}: {message}")
    if len(errors) > most:
        parts.append(f"and {len(errors) - most} more")
    return "; ".join(parts)


def _shorten(text: str, width: int = 64) -> str:
    """A model-chosen name as it is echoed back: a tool or argument name of 100 KB stays out of the context."""
    return text if len(text) <= width else f"{text[:width]}... ({len(text)} characters)"


def _signature(spec: ToolSpec) -> str:
    fields = spec.args_model.model_fields
    inner = ", ".join(f"{n}" + ("" if f.is_required() else f"={f.default!r}") for n, f in fields.items())
    return f"{spec.name}({inner})"
