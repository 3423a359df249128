"""Typed records for the files between the stages, and the one way to read and write them.

    records.py  Task, ResearchRow, GenerationRow, JudgedRow, SummaryRow, the image records, WiseItem
    io.py       read_rows / read_records (JSON or JSONL by content), resolve_path, ThrottledWriter

The records speak the reference system's field names exactly and keep unknown fields, so its files load
and ours load in its tools. This package sits low: it depends only on `errors` and `_files`.
"""

from gensearcher.data.io import (
    PathNotFound,
    ThrottledWriter,
    json_array,
    read_records,
    read_rows,
    read_tasks,
    resolve_or_keep,
    resolve_path,
    unique_ids,
)
from gensearcher.data.records import (
    ChatTurn,
    DroppedReference,
    GenerationRow,
    ImageInfo,
    JudgedRow,
    Meta,
    Record,
    ReferenceImage,
    ResearchRow,
    Scores,
    SeenImage,
    SummaryRow,
    Task,
    WiseItem,
)

__all__ = [
    "ChatTurn",
    "DroppedReference",
    "GenerationRow",
    "ImageInfo",
    "JudgedRow",
    "Meta",
    "PathNotFound",
    "Record",
    "ReferenceImage",
    "ResearchRow",
    "Scores",
    "SeenImage",
    "SummaryRow",
    "Task",
    "ThrottledWriter",
    "WiseItem",
    "json_array",
    "read_records",
    "read_rows",
    "read_tasks",
    "resolve_or_keep",
    "resolve_path",
    "unique_ids",
]
