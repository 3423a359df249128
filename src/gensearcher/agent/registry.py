"""Per-trajectory image ids: IMG_001, IMG_002, ... in order of first sight.

The same picture seen again (same content hash, file or URL) keeps its id, so the policy can cite an
image from any earlier search.
"""

from __future__ import annotations

import re

from gensearcher.data.records import SeenImage
from gensearcher.tools.base import ImageHit

RegisteredImage = SeenImage  # the name this module has always exported

# Six digits are a million images, more than any trajectory holds. The bound (and the length check below)
# keep a model-written id of thousands of digits from reaching int(), which refuses more than 4,300.
_ID = re.compile(r"^\s*IMG[_\-\s]?0*([0-9]{1,6})\s*$", re.IGNORECASE | re.ASCII)
MAX_ID_CHARS = 40


def normalise_img_id(value: str) -> str:
    """'IMG_1', 'img-001' and 'IMG_001' all mean IMG_001; anything else is returned unchanged."""
    match = _ID.match(value) if len(value) <= MAX_ID_CHARS else None
    return f"IMG_{int(match.group(1)):03d}" if match else value.strip()


class ImageRegistry:
    def __init__(self) -> None:
        self._by_id: dict[str, RegisteredImage] = {}
        self._by_key: dict[str, str] = {}

    def register(self, hit: ImageHit) -> RegisteredImage:
        keys = [key for key in (hit.sha256, hit.local_path, hit.url) if key]
        for key in keys:
            if key in self._by_key:
                known = self._by_id[self._by_key[key]]
                for other in keys:
                    self._by_key.setdefault(other, known.img_id)
                return known
        image = SeenImage(img_id=f"IMG_{len(self._by_id) + 1:03d}", **hit.model_dump(exclude_unset=True))
        self._by_id[image.img_id] = image
        for key in keys:
            self._by_key[key] = image.img_id
        return image

    @classmethod
    def restore(cls, images: list[SeenImage]) -> ImageRegistry:
        """A registry holding `images` again (a trajectory resumed from its checkpoint)."""
        registry = cls()
        for image in images:
            registry._by_id[image.img_id] = image
            for key in (image.sha256, image.local_path, image.url):
                if key:
                    registry._by_key.setdefault(key, image.img_id)
        return registry

    def get(self, img_id: str) -> RegisteredImage | None:
        return self._by_id.get(normalise_img_id(img_id))

    def all(self) -> list[RegisteredImage]:
        return list(self._by_id.values())
