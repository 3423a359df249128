"""Batches for SFTTrainer, rendered by the agent's own code, with the loss on assistant turns only.

Each row is encoded alone by `policy.transformers_local.encode_messages`, the function the in-process
policy calls at inference, so its tokens and pixels are what the agent shows the model. The prefix of a
row up to an assistant turn is therefore exactly the prompt of that turn, and the turn's tokens up to and
including `<|im_end|>` (the stop the model must learn) are the labels. Everything else is -100.

The assistant spans are found from the turn markers of the rendered ids, checked against the number of
messages and the generation header, so a template that renders differently fails loudly instead of
training on a wrong mask.
"""

from __future__ import annotations

import json
from typing import Any

from gensearcher.errors import UserError
from gensearcher.messages import Message
from gensearcher.policy.transformers_local import encode_messages

IGNORE = -100
_SEQUENCE_KEYS = ("input_ids", "attention_mask", "labels", "mm_token_type_ids", "token_type_ids")


class RenderError(UserError):
    """A row the chat template renders in a way the assistant mask cannot be built from."""


class AgentChatCollator:
    """`collator(examples) -> batch`: examples hold `messages` (our `Message` list as JSON) and `images`."""

    def __init__(self, processor: Any, *, max_length: int | None):
        self.processor = processor
        self.max_length = max_length
        tokenizer = processor.tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        ids = tokenizer.convert_tokens_to_ids
        self.im_start, self.im_end = ids("<|im_start|>"), ids("<|im_end|>")
        self.vision_start = ids("<|vision_start|>")
        self.header = tokenizer.encode("assistant\n", add_special_tokens=False)
        self.truncated = 0

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [self.encode(parse_messages(example["messages"])) for example in examples]
        return self._pad(rows)

    def encode(self, messages: list[Message]) -> dict[str, Any]:
        """One conversation: the processor's tensors (batch dim dropped) plus `labels`."""
        inputs = encode_messages(self.processor, messages, add_generation_prompt=False)
        row = {key: value[0] if key in _SEQUENCE_KEYS else value for key, value in inputs.items()}
        row["labels"] = self._labels(row["input_ids"], messages)
        if self.max_length is not None and row["input_ids"].shape[0] > self.max_length:
            row = self._truncate(row)
        return row

    def assistant_spans(self, ids: Any, messages: list[Message]) -> list[tuple[int, int]]:
        """[start, end) of every assistant turn's trained tokens: its content and its `<|im_end|>`."""
        starts = (ids == self.im_start).nonzero().flatten().tolist()
        if len(starts) < len(messages):
            raise RenderError(f"the chat template rendered {len(starts)} turns for {len(messages)} messages")
        starts = starts[len(starts) - len(messages):]  # a template may add its own default system turn first
        ends = (ids == self.im_end).nonzero().flatten().tolist()
        spans = []
        for start, message in zip(starts, messages, strict=True):
            if message.role != "assistant":
                continue
            header_end = start + 1 + len(self.header)
            if ids[start + 1 : header_end].tolist() != self.header:
                raise RenderError("an assistant turn does not open with '<|im_start|>assistant\\n'")
            end = next((e for e in ends if e >= header_end), None)
            if end is None:
                raise RenderError("an assistant turn is not closed by <|im_end|>")
            spans.append((header_end, end + 1))
        return spans

    def _labels(self, ids: Any, messages: list[Message]) -> Any:
        import torch

        labels = torch.full_like(ids, IGNORE)
        for start, end in self.assistant_spans(ids, messages):
            labels[start:end] = ids[start:end]
        return labels

    def _truncate(self, row: dict[str, Any]) -> dict[str, Any]:
        """Cut at max_length, or before the image the cut would split; drop the pixels of cut images."""
        self.truncated += 1
        ids = row["input_ids"]
        cut = self.max_length or ids.shape[0]
        vision_starts = (ids == self.vision_start).nonzero().flatten().tolist()
        grid = row.get("image_grid_thw")
        kept_images = 0
        if grid is not None:
            merge = getattr(self.processor.image_processor, "merge_size", 2) ** 2
            for index, start in enumerate(vision_starts[: grid.shape[0]]):
                tokens = int(grid[index].prod()) // merge
                if start + tokens + 2 > cut:  # vision_start, the image pads, vision_end
                    cut = min(cut, start)
                    break
                kept_images += 1
        out = {key: value[:cut] if key in _SEQUENCE_KEYS else value for key, value in row.items()}
        if grid is not None:
            patches = int(grid[:kept_images].prod(dim=1).sum())
            out["image_grid_thw"] = grid[:kept_images]
            out["pixel_values"] = row["pixel_values"][:patches]
        return out

    def _pad(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        length = max(row["input_ids"].shape[0] for row in rows)
        fill = {"input_ids": self.pad_id, "labels": IGNORE}
        batch: dict[str, Any] = {}
        for key in dict.fromkeys(key for row in rows for key in row):
            values = [row[key] for row in rows if key in row]
            if key in _SEQUENCE_KEYS:
                batch[key] = torch.stack([torch.nn.functional.pad(v, (0, length - v.shape[0]), value=fill.get(key, 0))
                                          for v in values])
            elif key in ("pixel_values", "image_grid_thw"):
                present = [v for v in values if v is not None and v.shape[0]]
                if present:
                    batch[key] = torch.cat(present)
        return batch


def parse_messages(value: str | list[Any]) -> list[Message]:
    items = json.loads(value) if isinstance(value, str) else value
    return [Message.model_validate(item) for item in items]
