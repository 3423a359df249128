"""The one rule: what the model trains on is token for token, pixel for pixel, what the agent shows it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gensearcher.agent.trajectory import load_trajectory
from gensearcher.config import PolicyConfig
from gensearcher.policy.transformers_local import TransformersPolicy, load_processor
from gensearcher.train.collator import IGNORE, AgentChatCollator
from gensearcher.train.dataset import ImageStore, rows_from_runs


class Recording:
    """Passes every call through to the real processor and keeps what it returned."""

    def __init__(self, processor):
        self._processor = processor
        self.outputs = []

    def __getattr__(self, name):
        return getattr(self._processor, name)

    def apply_chat_template(self, *args, **kwargs):
        output = self._processor.apply_chat_template(*args, **kwargs)
        self.outputs.append(output)
        return output


@pytest.fixture(scope="module")
def row_and_trajectory(recorded, tmp_path_factory):
    rows, _ = rows_from_runs([recorded], ImageStore(tmp_path_factory.mktemp("dataset")))
    row = next(r for r in rows if "red" in r.prompt)
    trajectory = load_trajectory(Path(row.origin))
    return row, trajectory


async def test_sft_row_equals_what_the_agent_loop_sends(row_and_trajectory, tiny_checkpoint):
    row, trajectory = row_and_trajectory
    roles = [m.role for m in row.messages]
    # The final round puts the last tool response and the final-step message in two user turns: kept as is.
    assert roles == ["system", "user", "assistant", "user", "user", "assistant"]
    assert row.messages[3].images and [i.sha256 for i in row.images] == [
        i.sha256 for m in trajectory.messages for i in m.images]
    assert all(Path(i.path).read_bytes() == Path(t.path).read_bytes()
               for i, t in zip(row.images, [i for m in trajectory.messages for i in m.images], strict=True))

    processor = load_processor(str(tiny_checkpoint))
    collator = AgentChatCollator(processor, max_length=None)
    batch = collator([{"messages": [m.model_dump() for m in row.messages], "images": []}])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    spans = collator.assistant_spans(ids, row.messages)

    policy = TransformersPolicy(PolicyConfig(model=str(tiny_checkpoint), temperature=0.0))
    policy._processor = Recording(policy._processor)
    assistant_at = [i for i, m in enumerate(trajectory.messages) if m.role == "assistant"]
    pixel_rows = 0
    for (start, end), index in zip(spans, assistant_at, strict=True):
        response = await policy.complete(trajectory.messages[:index], max_tokens=1)
        # The prompt of this turn at inference is exactly the row's prefix in training ...
        assert response.prompt_token_ids == ids[:start].tolist()
        sent = policy._processor.outputs[-1]
        if "pixel_values" in sent:
            pixel_rows = sent["pixel_values"].shape[0]
            assert torch.equal(sent["pixel_values"], batch["pixel_values"][:pixel_rows])
            assert torch.equal(sent["image_grid_thw"], batch["image_grid_thw"][: sent["image_grid_thw"].shape[0]])
        # ... and the trained tokens are the turn as the model writes it, then the stop token.
        text = trajectory.messages[index].text
        expected = [*processor.tokenizer.encode(text, add_special_tokens=False), collator.im_end]
        assert ids[start:end].tolist() == expected and labels[start:end].tolist() == expected
    assert pixel_rows == batch["pixel_values"].shape[0]  # every image of the row was in some prompt
    trained = (labels != IGNORE).nonzero().flatten().tolist()
    assert trained == [p for start, end in spans for p in range(start, end)]  # nothing else carries loss


def test_truncation_cuts_before_an_image_and_keeps_tensors_consistent(row_and_trajectory, tiny_checkpoint):
    row, _ = row_and_trajectory
    processor = load_processor(str(tiny_checkpoint))
    full = AgentChatCollator(processor, max_length=None).encode(row.messages)
    vision_start = processor.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    first_image = (full["input_ids"] == vision_start).nonzero().flatten().tolist()[0]
    collator = AgentChatCollator(processor, max_length=first_image + 3)  # the cut would fall inside the image
    batch = collator([{"messages": [m.model_dump() for m in row.messages]}])
    assert batch["input_ids"].shape[1] == first_image and "pixel_values" not in batch
    assert collator.truncated == 1
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_checkpoint)
    assert torch.isfinite(model(**batch).loss)  # no image tokens without pixels, nor pixels without tokens
