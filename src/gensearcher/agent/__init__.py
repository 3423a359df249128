"""The research agent: protocol, loop, trajectories and batch runs."""

from gensearcher.agent.batch import BatchRunner, BatchSummary, load_tasks, result_row
from gensearcher.agent.factory import build_agent
from gensearcher.agent.loop import Agent
from gensearcher.agent.prompts import (
    Framing,
    ReferenceTexts,
    import_reference_texts,
    load_reference_texts,
    load_system_template,
    render_system_prompt,
)
from gensearcher.agent.registry import ImageRegistry, RegisteredImage
from gensearcher.agent.trajectory import (
    Answer,
    ReferenceImage,
    Step,
    Task,
    Termination,
    ToolCallRecord,
    Trajectory,
)

__all__ = [
    "Agent",
    "Answer",
    "BatchRunner",
    "BatchSummary",
    "Framing",
    "ImageRegistry",
    "ReferenceImage",
    "ReferenceTexts",
    "RegisteredImage",
    "Step",
    "Task",
    "Termination",
    "ToolCallRecord",
    "Trajectory",
    "build_agent",
    "import_reference_texts",
    "load_reference_texts",
    "load_system_template",
    "load_tasks",
    "render_system_prompt",
    "result_row",
]
