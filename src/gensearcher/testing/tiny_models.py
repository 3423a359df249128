"""Tiny random-weight models built from configs, for tests and CPU demos (no hub access needed).

`save_tiny_qwen3_vl(folder)` writes a complete Qwen3-VL checkpoint (about 0.6 M parameters): model,
byte-level BPE tokenizer with the Qwen special tokens, PIL image processor, and the Qwen3-VL chat
template that TRL ships. The same loading code then runs as for the real Gen-Searcher-8B checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
# Non-special in real Qwen3 too: they must survive skip_special_tokens so tool calls can be parsed.
PROTOCOL_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>",
                   "<answer>", "</answer>"]


def _corpus() -> list[str]:
    words = ("search image_search browse queries query top_k url gen_prompt reference_images img_id note IMG_001 "
             "the a photo of trophy jersey team poster stadium winner 2026 first second reference image").split()
    lines = [" ".join(words[i:] + words[:i]) for i in range(len(words))]
    return lines * 20 + ['{"name": "search", "arguments": {"queries": ["x"]}}'] * 20


def qwen3_vl_chat_template() -> str:
    try:
        import trl
    except ImportError:
        raise RuntimeError("the tiny Qwen3-VL needs TRL's chat template: pip install 'gensearcher[train]'") from None
    return (Path(trl.__file__).parent / "chat_templates" / "qwen3_vl.jinja").read_text(encoding="utf-8")


def tiny_tokenizer(chat_template: str | None = None) -> Any:
    """A byte-level BPE tokenizer with Qwen's special tokens, trained in-process on a tiny corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(_corpus(), trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=SPECIAL_TOKENS[1:])
    tokenizer.add_tokens(PROTOCOL_TOKENS)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def save_tiny_qwen3_vl(folder: Path, *, seed: int = 0) -> Path:
    """Build and save a tiny Qwen3-VL checkpoint into `folder`; returns the folder."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(qwen3_vl_chat_template())
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = Qwen3VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=ids["<|im_end|>"],
                         rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [4, 2, 2],
                                          "mrope_interleaved": True}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
                           spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64,
                           num_position_embeddings=64, deepstack_visual_indexes=[0, 1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    model = Qwen3VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    image_processor = Qwen2VLImageProcessorPil(patch_size=16, temporal_patch_size=2, merge_size=2,
                                               size={"shortest_edge": 32 * 32, "longest_edge": 64 * 64 * 4})
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    return folder


def save_tiny_qwen_image(folder: Path, *, edit: bool = False, seed: int = 0) -> Path:
    """Build and save a tiny QwenImagePipeline (or QwenImageEditPlusPipeline with `edit`) into `folder`.

    Component sizes follow diffusers' own fast tests. Without torchvision the edit pipeline's processor is
    saved as a plain Qwen2VLProcessor entry; `gensearcher.generate.diffusers_backend` loads it back.
    """
    import json

    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2,
                                              attention_head_dim=16, num_attention_heads=3, joint_attention_dim=16,
                                              guidance_embeds=False, axes_dims_rope=(8, 4, 4))
    vae = AutoencoderKLQwenImage(base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "vocab_size": len(tokenizer),
                     "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                     "rope_parameters": {"mrope_section": [1, 1, 2], "rope_type": "default", "rope_theta": 1e6}},
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16, vocab_size=len(tokenizer), bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config)
    components: dict[str, Any] = {"transformer": transformer, "vae": vae, "scheduler": FlowMatchEulerDiscreteScheduler(),
                                  "text_encoder": text_encoder, "tokenizer": tokenizer}
    if edit:
        from diffusers import QwenImageEditPlusPipeline
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        from gensearcher.generate.diffusers_backend import image_only_processor_class

        processor = image_only_processor_class()(image_processor=Qwen2VLImageProcessorPil(patch_size=14),
                                                 tokenizer=tokenizer)
        pipeline: Any = QwenImageEditPlusPipeline(processor=processor, **components)
    else:
        from diffusers import QwenImagePipeline

        pipeline = QwenImagePipeline(**components)
    folder.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(folder)
    if edit:
        index = json.loads((folder / "model_index.json").read_text())
        index["processor"] = ["transformers", "Qwen2VLProcessor"]  # the class a real checkpoint names
        (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder
