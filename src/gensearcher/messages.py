"""Chat messages as the policy sees them.

A message keeps its images as files (path + sha256), never as inline base64, so a trajectory can be
stored, diffed and turned into SFT data without re-rendering. The files are the exact pixels the policy
was shown: `images.prepare_for_policy` resizes them to the pixel cap before they enter a message.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class ImageRef(BaseModel):
    """An image file shown to the policy."""

    model_config = ConfigDict(frozen=True)

    path: str
    sha256: str
    width: int
    height: int


class Message(BaseModel):
    """One chat message. In a user message the images come before the text (as in Qwen-VL training)."""

    role: Literal["system", "user", "assistant"]
    text: str
    images: list[ImageRef] = []

    def to_reference_format(self) -> dict[str, object]:
        """The reference system's `trajectory_messages` entry: role, content, image paths."""
        return {"role": self.role, "content": self.text, "images": [image.path for image in self.images]}
