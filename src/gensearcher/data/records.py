"""Typed records for every stage boundary, in the reference system's field names.

task -> research row -> generation row -> judged row (+ summary rows). Each record reads the reference
system's files as they are (legacy `gen_image`, rows without optional fields) and keeps every field it
does not know, so a file read and written again loses nothing. Records written out are dumped with
`Record.to_json()`: only the fields that were given or set, in the reference spelling.

The field lists follow `shared/reference/reference-formats.md`; ours are marked "ours".
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

ItemId = int | str
"""Ids are kept as given: KnowGen uses numbers, other sets strings. Files and joins use `str(id)`."""


class Record(BaseModel):
    """Base of the file records: unknown fields are kept, and dumps hold only what was given or set."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, coerce_numbers_to_str=True)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object in the reference spelling, unknown fields included."""
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)


class Meta(Record):
    """`meta` of a task: KnowGen's category and difficulty, WISE's subcategory, anything else kept."""

    category: str | None = Field(None, description="Fine category (KnowGen: e.g. 'sports', 'anime').")
    difficulty: str | None = Field(None, description="KnowGen difficulty label; informational.")
    subcategory: str | None = Field(None, description="WISE subcategory.")

    @model_serializer(mode="wrap")
    def _without_blanks(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Labels a file did not have are not written, also after a round trip through a trajectory.
        return {key: value for key, value in handler(self).items() if value is not None}


def text_not_applicable(value: Any) -> bool:
    """`text_accuracy_na` as the reference evaluator reads it: True, "true", "True" or the number 1."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value in ("true", "True")
    return isinstance(value, (int, float)) and value == 1


def _legacy_gt(value: Any) -> Any:
    """Older files name the ground truth `gen_image`: read it as `gt_image`."""
    if isinstance(value, dict) and "gen_image" in value:
        legacy = value.get("gen_image")
        value = {key: item for key, item in value.items() if key != "gen_image"}
        if not value.get("gt_image") and legacy:
            value["gt_image"] = legacy
    return value


class Task(Record):
    """One request for a picture: a benchmark item, an RL prompt or a user's prompt.

    The agent sees only `prompt`; `explanation` (WISE's judging guide) is for the judge and is never
    written out with the task, so neither the agent nor the generator can read it.
    """

    id: ItemId = Field(..., description="As given in the input; the index when the input had none.")
    prompt: str = Field(..., min_length=1, description="The request, exactly as the user or benchmark wrote it.")
    meta: Meta = Field(default_factory=Meta, description="Category, difficulty and other labels, kept as given.")
    gt_image: str | None = Field(None, description="Ground-truth image (legacy name `gen_image`); absolute once read.")
    explanation: str | None = Field(None, exclude=True, description="WISE's judging guide: judge only, never written.")

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, value: Any) -> Any:
        return _legacy_gt(value)

    @field_validator("id")
    @classmethod
    def _id_not_blank(cls, value: ItemId) -> ItemId:
        if isinstance(value, str) and not value.strip():
            raise ValueError("an id must not be empty")
        return value

    @property
    def category(self) -> str:
        return self.meta.category or ""

    @property
    def difficulty(self) -> str:
        return self.meta.difficulty or ""


class ImageInfo(Record):
    """An image file the research found: where it is and where it came from."""

    local_path: str | None = Field(None, description="The stored file (absolute in results files).")
    url: str | None = Field(None, description="Where the picture was downloaded from.")
    title: str | None = Field(None, description="Title of the search hit or page.")
    page_url: str | None = Field(None, description="The page that shows the picture (ours).")
    sha256: str | None = Field(None, description="sha256 of the downloaded bytes (ours).")


class SeenImage(ImageInfo):
    """An image with the IMG id the policy knows it by."""

    img_id: str = Field(..., description="IMG_001, IMG_002 ... in order of first sight within one trajectory.")


class ReferenceImage(SeenImage):
    """A reference image chosen in an answer, with the model's note on what to take from it."""

    note: str = Field("", description="What the generator should copy from this image.")


class ChatTurn(Record):
    """One `trajectory_messages` entry of the reference agent output."""

    role: Literal["system", "user", "assistant"]
    content: str = Field("", description="The message text (the reference caps it at 50,000 characters).")
    images: list[str] = Field(default_factory=list, description="Image files of the message (at most 10).")


class ResearchRow(Record):
    """One row of a research `results.json`: the reference agent-output format, plus our fields."""

    id: ItemId
    prompt: str
    meta: Meta = Field(default_factory=Meta)
    termination: str = Field("", description="How the research ended ('answer' when it produced one).")
    gen_prompt: str = Field("", description="The grounded prompt; empty when there is no valid answer.")
    reference_images: list[ReferenceImage] = Field(default_factory=list, description="In the answer's order.")
    gt_image: str | None = Field(None, description="Carried from the task for the judge.")
    trajectory_messages: list[ChatTurn] = Field(default_factory=list, description="The conversation, reference shape.")
    trajectory: str | None = Field(None, description="Ours: our trajectory file, relative to the results file.")
    error: str | None = Field(None, description="Ours: why the research failed (infrastructure).")

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, value: Any) -> Any:
        return _legacy_gt(value)


class DroppedReference(BaseModel):
    """A reference image a generator did not take, and why."""

    index: int = Field(..., description="Position in the answer's list.")
    path: str
    reason: str


class GenerationRow(Record):
    """One row of a generation `results.json`: the reference generation-output format, plus our fields.

    Unfinished rows of the reference are `{id, pending: true}`; readers skip them.
    """

    id: ItemId
    prompt: str | None = None
    gen_prompt: str | None = None
    meta: Meta = Field(default_factory=Meta)
    gt_image: str | None = None
    used_prompt: str | None = Field(None, description="The text the generator received.")
    used_images: list[str] = Field(default_factory=list, description="The reference files the generator received.")
    output_path: str | None = Field(None, description="The generated image (absolute).")
    success: bool = False
    error: str | None = None
    pending: bool | None = Field(None, description="The reference's marker of an unfinished row.")
    dropped_references: list[DroppedReference] = Field(default_factory=list, description="Ours.")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Ours: the generator's arguments.")
    backend: str | None = Field(None, description="Ours: the generator backend.")
    model: str | None = Field(None, description="Ours: the generator model.")
    seconds: float | None = Field(None, description="Ours: generation time.")

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, value: Any) -> Any:
        return _legacy_gt(value)


class Scores(Record):
    """A judgement's scores as stored in `results_eval.json` (KnowGen keys; WISE keys are kept as extras)."""

    rationale: str = ""
    faithfulness: float | None = None
    visual_correctness: float | None = None
    text_accuracy: float | None = None
    aesthetics: float | None = None
    overall: float | None = None
    text_accuracy_na: bool | None = None

    @field_validator("text_accuracy_na", mode="before")
    @classmethod
    def _truthy(cls, value: Any) -> Any:
        return None if value is None else text_not_applicable(value)

    def number(self, key: str) -> float | None:
        """A numeric score by name (KnowGen dimension or WISE extra), or None."""
        value = getattr(self, key, None) if key in type(self).model_fields else (self.model_extra or {}).get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)


class JudgedRow(GenerationRow):
    """One row of `results_eval.json`: the generation row plus the judgement (reference format, plus ours)."""

    eval_success: bool = False
    scores: Scores | None = None
    judge_raw: str | None = Field(None, description="Ours: the judge's last raw answer.")


class SummaryRow(Record):
    """A summary row at the end of `results_eval.json` (science_and_knowledge, pop_culture_and_news, overall_avg)."""

    summary_type: str
    avg_scores: dict[str, float] = Field(default_factory=dict, description="The 4 dimensions and overall, 0-1.")
    count: int = 0


class WiseItem(BaseModel):
    """One WISE prompt as its files spell it."""

    model_config = ConfigDict(extra="allow")

    prompt_id: int
    Prompt: str = Field(..., min_length=1)
    Explanation: str
    Category: str
    Subcategory: str | None = None

    def task(self) -> Task:
        return Task(id=self.prompt_id, prompt=self.Prompt, explanation=self.Explanation,
                    meta=Meta(category=self.Category, **({"subcategory": self.Subcategory} if self.Subcategory else {})))
