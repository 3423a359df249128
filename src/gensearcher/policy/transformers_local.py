"""In-process policy: a Qwen3-VL-family checkpoint run with transformers.

The one-machine default when no endpoint is configured. Generation runs in a worker thread, one request
at a time (one model in memory); the event loop stays free for the tools of other trajectories. Every turn
returns its exact prompt and completion token ids, and log-probabilities when asked, for training.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gensearcher.config import PolicyConfig
from gensearcher.errors import ConfigError, ContextLengthExceeded, PolicyError
from gensearcher.messages import Message
from gensearcher.policy.base import PolicyResponse, TokenUsage


class TransformersPolicy:
    def __init__(self, config: PolicyConfig):
        if not config.model:
            raise ConfigError("GENSEARCHER_POLICY_MODEL is not set (a checkpoint folder or model id).")
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError:
            raise ConfigError(
                "the transformers policy backend needs torch and transformers: pip install 'gensearcher[local]'"
            ) from None
        self.config = config
        self._model, self._processor = _load(config)
        self._lock = asyncio.Lock()

    def describe(self) -> dict[str, Any]:
        import transformers

        return {
            "backend": "transformers",
            "model": self.config.model,
            "architecture": type(self._model).__name__,
            "transformers": transformers.__version__,
        }

    async def aclose(self) -> None:
        self._model = None

    async def complete(self, messages: Sequence[Message], *, max_tokens: int) -> PolicyResponse:
        started = time.monotonic()
        async with self._lock:
            try:
                response = await asyncio.to_thread(self._generate, list(messages), max_tokens)
            except ContextLengthExceeded:
                raise
            except Exception as exc:
                raise PolicyError(f"local generation failed: {type(exc).__name__}: {exc}") from exc
        response.latency_s = time.monotonic() - started
        return response

    def _generate(self, messages: list[Message], max_tokens: int) -> PolicyResponse:
        import torch

        inputs = encode_messages(self._processor, messages, add_generation_prompt=True).to(self._model.device)
        prompt_len = int(inputs["input_ids"].shape[1])
        limit = getattr(self._model.config.get_text_config(), "max_position_embeddings", None)
        if limit is not None and prompt_len + 1 > limit:
            raise ContextLengthExceeded(f"prompt of {prompt_len} tokens exceeds the model's {limit}")
        if self.config.seed is not None:
            torch.manual_seed(self.config.seed)
        sampling = self.config.temperature > 0
        generation = self._model.generate(
            **inputs,
            max_new_tokens=max_tokens,
            do_sample=sampling,
            temperature=self.config.temperature if sampling else None,
            top_p=self.config.top_p if sampling else None,
            top_k=None,
            return_dict_in_generate=True,
            output_scores=self.config.logprobs,
        )
        completion = generation.sequences[0, prompt_len:]
        tokenizer = self._processor.tokenizer
        eos_ids = eos_token_ids(self._model, tokenizer)
        ids = completion.tolist()
        while ids and ids[-1] == tokenizer.pad_token_id and tokenizer.pad_token_id not in eos_ids:
            ids.pop()
        finished = bool(ids) and ids[-1] in eos_ids
        logprobs = None
        if self.config.logprobs and generation.scores:
            logprobs = [
                float(torch.log_softmax(score[0].float(), dim=-1)[token])
                for score, token in zip(generation.scores, ids, strict=False)
            ]
        return PolicyResponse(
            text=tokenizer.decode(ids, skip_special_tokens=True),
            finish_reason="stop" if finished or len(ids) < max_tokens else "length",
            usage=TokenUsage(prompt_tokens=prompt_len, completion_tokens=len(ids)),
            prompt_token_ids=inputs["input_ids"][0].tolist(),
            completion_token_ids=ids,
            completion_logprobs=logprobs,
        )


def chat_for_processor(messages: Sequence[Message], *, specials: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Our messages as the processor's chat template takes them: per message its images, then its text.

    The one place that decides how a conversation reaches a local model. The in-process policy and the SFT
    collator (`gensearcher.train.collator`) both call it, so training sees the exact tokens and pixels the
    agent shows at inference. Images are the stored, already capped files of the trajectory; the texts
    spell none of `specials` (the tokenizer's special tokens, see `neutralise_special_tokens`).
    """
    from PIL import Image

    chat = []
    for message in messages:
        content: list[dict[str, Any]] = []
        for image in message.images:
            with Image.open(image.path) as opened:
                content.append({"type": "image", "image": opened.convert("RGB")})
        content.append({"type": "text", "text": neutralise_special_tokens(message.text, specials)})
        chat.append({"role": message.role, "content": content})
    return chat


def neutralise_special_tokens(text: str, specials: Sequence[str]) -> str:
    """`text` with every spelled-out special token (`<|image_pad|>`, `<|im_end|>`, ...) broken by a zero-width
    space, so the tokenizer reads it as text. A page, a task or an echoed query that spells one would
    otherwise become a real image or end-of-turn token: the processor refuses an image token without
    pixels, and an end-of-turn would forge a turn boundary."""
    for token in specials:
        if token in text:
            text = text.replace(token, token[0] + "\u200b" + token[1:])
    return text


def encode_messages(processor: Any, messages: Sequence[Message], *, add_generation_prompt: bool) -> Any:
    """Token ids, attention mask and pixel inputs (a `BatchFeature` of batch 1) for one conversation."""
    tokenizer = getattr(processor, "tokenizer", processor)
    specials = [t for t in getattr(tokenizer, "all_special_tokens", []) if len(t) > 1]
    return processor.apply_chat_template(
        chat_for_processor(messages, specials=specials), add_generation_prompt=add_generation_prompt, tokenize=True,
        return_dict=True, return_tensors="pt",
    )


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """The tokens that end a turn: the generation config's and the tokenizer's."""
    ids = model.generation_config.eos_token_id
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return found


def _load(config: PolicyConfig) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForImageTextToText

    model_name = str(config.model)
    local = Path(model_name).expanduser()
    source = str(local) if local.exists() else model_name
    dtype = "auto" if config.dtype == "auto" else getattr(torch, config.dtype)
    try:
        model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the policy checkpoint {config.model!r}: {exc}") from None
    # transformers annotates `to` through an unbound-method wrapper, so mypy sees `self` as the device.
    model.to(config.device).eval()  # type: ignore[arg-type]
    return model, load_processor(source)


def load_processor(source: str) -> Any:
    """The checkpoint's processor, or an image-only one where the video processor cannot load.

    Without torchvision, transformers cannot build Qwen-VL video processors, and `AutoProcessor` then
    falls back to returning just the tokenizer. Images are all the agent needs, so build the processor
    from its image processor and tokenizer alone.
    """
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    try:
        processor = AutoProcessor.from_pretrained(source)
    except (ImportError, OSError, ValueError, AttributeError, TypeError):
        processor = None
    if processor is not None and hasattr(processor, "image_processor"):
        return processor
    processor_cls = _image_only_processor_class(source)
    tokenizer = AutoTokenizer.from_pretrained(source)
    return processor_cls(
        image_processor=AutoImageProcessor.from_pretrained(source),
        tokenizer=tokenizer,
        chat_template=getattr(tokenizer, "chat_template", None),
    )


def _image_only_processor_class(source: str) -> Any:
    from transformers import AutoConfig
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

    base: type[Any] = Qwen3VLProcessor
    if AutoConfig.from_pretrained(source).model_type in ("qwen2_vl", "qwen2_5_vl"):
        from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor

        base = Qwen2_5_VLProcessor

    class ImageOnlyProcessor(base):
        # ProcessorMixin derives its attributes from __init__'s signature: leaving out the video
        # processor is what lets it load without torchvision.
        def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs: Any):
            super().__init__(
                image_processor=image_processor, tokenizer=tokenizer, video_processor=None, chat_template=chat_template, **kwargs
            )

    return ImageOnlyProcessor
