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


def _qwen25_vl(tokenizer: Any) -> Any:
    """A tiny Qwen2.5-VL (the text encoder of Qwen-Image and LongCat-Image), sizes after diffusers' fast tests."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "vocab_size": len(tokenizer),
                     "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                     "rope_parameters": {"mrope_section": [1, 1, 2], "rope_type": "default", "rope_theta": 1e6}},
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        # Also kept at the top level, as in the released checkpoints' config.json (transformers stores
        # undeclared keys as attributes; its annotations do not list them).
        **{"hidden_size": 16, "vocab_size": len(tokenizer), "bos_token_id": ids["<|endoftext|>"],
           "eos_token_id": ids["<|im_end|>"]},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def _name_processor_as_the_real_checkpoint(folder: Path, component: str) -> None:
    """Without torchvision the image-only processor is saved under its own class; real checkpoints name
    Qwen2VLProcessor, which is what `gensearcher.generate.diffusers_backend` must load back."""
    import json

    index = json.loads((folder / "model_index.json").read_text())
    index[component] = ["transformers", "Qwen2VLProcessor"]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def save_tiny_qwen_image(folder: Path, *, edit: bool = False, seed: int = 0) -> Path:
    """Build and save a tiny QwenImagePipeline (or QwenImageEditPlusPipeline with `edit`) into `folder`.

    Component sizes follow diffusers' own fast tests. Without torchvision the edit pipeline's processor is
    saved as a plain Qwen2VLProcessor entry; `gensearcher.generate.diffusers_backend` loads it back.
    """
    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2,
                                              attention_head_dim=16, num_attention_heads=3, joint_attention_dim=16,
                                              guidance_embeds=False, axes_dims_rope=(8, 4, 4))
    vae = AutoencoderKLQwenImage(base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    text_encoder = _qwen25_vl(tokenizer)
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
        _name_processor_as_the_real_checkpoint(folder, "processor")
    return folder


# -- tiny diffusers pipelines of the other families (random weights, a few thousand parameters each) ---------

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
                 "{% else %}{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% else %}"
                 "<|vision_start|><|image_pad|><|vision_end|>{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _small_vae(latent_channels: int, levels: int = 1) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(4,) * levels,
                         down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
                         layers_per_block=1, latent_channels=latent_channels, norm_num_groups=1, sample_size=32,
                         use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)


def _clip(tokenizer: Any, *, projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=77, projection_dim=16,
                            bos_token_id=0, eos_token_id=2, pad_token_id=tokenizer.pad_token_id)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _t5(tokenizer: Any, d_model: int) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=32, num_layers=1,
                                   num_heads=2, relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id,
                                   # kept as an attribute; transformers' annotations do not list it
                                   **{"decoder_start_token_id": tokenizer.pad_token_id}))


def _qwen3(tokenizer: Any, *, layers: int = 2, causal_lm: bool = False) -> Any:
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    config = Qwen3Config(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=2, head_dim=8, max_position_embeddings=1024,
                         pad_token_id=tokenizer.pad_token_id)
    return (Qwen3ForCausalLM if causal_lm else Qwen3Model)(config)


def _tokenizer(max_length: int, chat: bool = False) -> Any:
    tokenizer = tiny_tokenizer(CHAT_TEMPLATE if chat else None)
    tokenizer.model_max_length = max_length
    return tokenizer


def _save(pipeline: Any, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(folder)
    return folder


def save_tiny_flux(folder: Path, *, seed: int = 0) -> Path:
    """A tiny FluxPipeline (FLUX.1-dev layout: CLIP and T5 text encoders, guidance-distilled transformer)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = _tokenizer(77), _tokenizer(512)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                         pooled_projection_dim=16, guidance_embeds=True, axes_dims_rope=(4, 4, 8))
    return _save(FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=_small_vae(1),
                              text_encoder=_clip(tokenizer, projection=False), tokenizer=tokenizer,
                              text_encoder_2=_t5(tokenizer_2, 16), tokenizer_2=tokenizer_2, transformer=transformer),
                 folder)


def save_tiny_sd3(folder: Path, *, seed: int = 0) -> Path:
    """A tiny StableDiffusion3Pipeline (two CLIP encoders with projection, a T5, the MMDiT)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    tokenizer, tokenizer_2, tokenizer_3 = _tokenizer(77), _tokenizer(77), _tokenizer(256)
    transformer = SD3Transformer2DModel(sample_size=32, patch_size=1, in_channels=4, num_layers=1,
                                        attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                        caption_projection_dim=16, pooled_projection_dim=32, out_channels=4,
                                        pos_embed_max_size=64)
    return _save(StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=_small_vae(4),
        text_encoder=_clip(tokenizer, projection=True), tokenizer=tokenizer,
        text_encoder_2=_clip(tokenizer_2, projection=True), tokenizer_2=tokenizer_2,
        text_encoder_3=_t5(tokenizer_3, 32), tokenizer_3=tokenizer_3), folder)


def save_tiny_z_image(folder: Path, *, seed: int = 0) -> Path:
    """A tiny ZImagePipeline (Qwen3 text encoder with a chat template, the single-stream DiT)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel

    torch.manual_seed(seed)
    tokenizer = _tokenizer(512, chat=True)
    transformer = ZImageTransformer2DModel(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=32,
                                           n_layers=1, n_refiner_layers=1, n_heads=2, n_kv_heads=2, cap_feat_dim=16,
                                           axes_dims=[8, 4, 4], axes_lens=[512, 32, 32])
    return _save(ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=_small_vae(4),
                                text_encoder=_qwen3(tokenizer), tokenizer=tokenizer, transformer=transformer), folder)


def save_tiny_lumina2(folder: Path, *, seed: int = 0) -> Path:
    """A tiny Lumina2Pipeline (Gemma-2 text encoder; the pipeline fixes the VAE factor at 8)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    torch.manual_seed(seed)
    tokenizer = _tokenizer(256)
    text_encoder = Gemma2Model(Gemma2Config(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                            head_dim=8, pad_token_id=tokenizer.pad_token_id))
    transformer = Lumina2Transformer2DModel(sample_size=4, patch_size=2, in_channels=4, hidden_size=16, num_layers=1,
                                            num_refiner_layers=1, num_attention_heads=2, num_kv_heads=2, multiple_of=16,
                                            axes_dim_rope=(4, 2, 2), axes_lens=(300, 32, 32), cap_feat_dim=16)
    return _save(Lumina2Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
                                 vae=_small_vae(4, levels=4), text_encoder=text_encoder, tokenizer=tokenizer), folder)


def save_tiny_flux2_klein(folder: Path, *, seed: int = 0) -> Path:
    """A tiny Flux2KleinPipeline (FLUX.2-klein layout: a Qwen3 causal LM whose layers 9, 18 and 27 feed the
    transformer, so it keeps 28 layers of width 16; the patchifying Flux2 VAE)."""
    import torch
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )

    torch.manual_seed(seed)
    tokenizer = _tokenizer(512, chat=True)
    transformer = Flux2Transformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                          attention_head_dim=16, num_attention_heads=2, joint_attention_dim=48,
                                          timestep_guidance_channels=32, mlp_ratio=2.0, axes_dims_rope=(4, 4, 4, 4),
                                          guidance_embeds=False)
    vae = AutoencoderKLFlux2(block_out_channels=(4,), down_block_types=("DownEncoderBlock2D",),
                             up_block_types=("UpDecoderBlock2D",), layers_per_block=1, latent_channels=4,
                             norm_num_groups=1, sample_size=32, use_quant_conv=False, use_post_quant_conv=False)
    return _save(Flux2KleinPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                                    text_encoder=_qwen3(tokenizer, layers=28, causal_lm=True), tokenizer=tokenizer,
                                    transformer=transformer, is_distilled=True), folder)


def save_tiny_longcat_image(folder: Path, *, edit: bool = False, seed: int = 0) -> Path:
    """A tiny LongCatImagePipeline (or LongCatImageEditPipeline with `edit`): Qwen2.5-VL text encoder and
    processor (with a chat template: the text pipeline rewrites prompts with it), a Flux-style transformer."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, LongCatImageTransformer2DModel
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from gensearcher.generate.diffusers_backend import image_only_processor_class

    torch.manual_seed(seed)
    tokenizer = _tokenizer(512, chat=True)
    text_encoder = _qwen25_vl(tokenizer)
    # The text pipeline rewrites each prompt with up to 512 generated tokens; all-zero logits make greedy
    # decoding pick token 0, declared end-of-text, so the rewrite runs (one token) in a second.
    with torch.no_grad():
        text_encoder.lm_head.weight.zero_()
    text_encoder.generation_config.eos_token_id = [0, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    processor = image_only_processor_class()(image_processor=Qwen2VLImageProcessorPil(patch_size=14),
                                             tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    transformer = LongCatImageTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                                 attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                                 pooled_projection_dim=16, axes_dims_rope=[4, 6, 6])
    parts = {"scheduler": FlowMatchEulerDiscreteScheduler(), "vae": _small_vae(16, levels=5), "text_encoder": text_encoder,
             "tokenizer": tokenizer, "text_processor": processor, "transformer": transformer}
    if edit:
        from diffusers import LongCatImageEditPipeline

        pipeline: Any = LongCatImageEditPipeline(**parts)
    else:
        from diffusers import LongCatImagePipeline

        pipeline = LongCatImagePipeline(**parts)
    _save(pipeline, folder)
    _name_processor_as_the_real_checkpoint(folder, "text_processor")
    return folder


_IMAGE3_CONFIG = '''
from transformers import PretrainedConfig


class TinyImage3Config(PretrainedConfig):
    model_type = "tiny_hunyuan_image3"

    def __init__(self, hidden_size=8, moe_impl="eager", **kwargs):
        self.hidden_size = hidden_size
        self.moe_impl = moe_impl
        super().__init__(**kwargs)
'''

_IMAGE3_MODEL = '''
import hashlib

import torch
from PIL import Image
from transformers import PreTrainedModel

from .configuration_tiny import TinyImage3Config


class TinyImage3ForCausalMM(PreTrainedModel):
    """HunyuanImage-3.0's interface (load_tokenizer, generate_image) over one random linear layer."""

    config_class = TinyImage3Config
    _supports_sdpa = True  # as the real model, loaded with attn_implementation="sdpa"

    def __init__(self, config):
        super().__init__(config)
        self.to_rgb = torch.nn.Linear(config.hidden_size, 3)
        self.tokenizer_path = None
        self.calls = []
        self.post_init()

    def load_tokenizer(self, path):
        self.tokenizer_path = str(path)

    def generate_image(self, prompt, seed=None, image_size="auto", use_system_prompt=None, system_prompt=None,
                       bot_task=None, stream=False, **kwargs):
        if self.tokenizer_path is None:
            raise RuntimeError("load_tokenizer was not called")
        self.calls.append({"prompt": prompt, "seed": seed, "image_size": image_size, **kwargs})
        height, width = (64, 64) if image_size == "auto" else (int(side) for side in image_size.split("x"))
        salt = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16)
        noise = torch.randn(height * width, self.config.hidden_size,
                            generator=torch.Generator().manual_seed((seed or 0) + salt))
        pixels = torch.sigmoid(self.to_rgb(noise.to(self.to_rgb.weight.dtype))).reshape(height, width, 3)
        return Image.fromarray((pixels.detach().float().numpy() * 255).astype("uint8"), "RGB")
'''


def save_tiny_image3(folder: Path, *, seed: int = 0) -> Path:
    """A checkpoint folder with HunyuanImage-3.0's loading interface (remote code: `architectures`
    HunyuanImage3ForCausalMM, `auto_map`, `load_tokenizer`, `generate_image`) over a random linear layer.
    It checks how gensearcher loads and calls such a model, not the model itself."""
    import importlib.util
    import json
    import sys

    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "configuration_tiny.py").write_text(_IMAGE3_CONFIG.lstrip(), encoding="utf-8")
    (folder / "modeling_tiny.py").write_text(_IMAGE3_MODEL.lstrip(), encoding="utf-8")
    package = f"_tiny_image3_{abs(hash(str(folder)))}"
    spec = importlib.util.spec_from_file_location(package, folder / "__init__.py", submodule_search_locations=[str(folder)])
    assert spec is not None and spec.loader is not None
    (folder / "__init__.py").write_text("", encoding="utf-8")
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    try:
        spec.loader.exec_module(module)
        modeling = importlib.import_module(f"{package}.modeling_tiny")
        torch.manual_seed(seed)
        model = modeling.TinyImage3ForCausalMM(modeling.TinyImage3Config())
        model.save_pretrained(folder)
    finally:
        for name in [name for name in sys.modules if name.startswith(package)]:
            del sys.modules[name]
    (folder / "__init__.py").unlink()
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["HunyuanImage3ForCausalMM"],
                  auto_map={"AutoConfig": "configuration_tiny.TinyImage3Config",
                            "AutoModelForCausalLM": "modeling_tiny.TinyImage3ForCausalMM"})
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder
