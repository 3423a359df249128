"""Qwen-Image-sized generation cost on a GPU: a QwenImageTransformer2DModel with the real configuration
(60 layers, 24 heads of 128, 20 B parameters) and random weights, at 1024x1024 with true CFG, 40 steps.

Measures the denoising loop (two transformer calls per step, as the pipeline makes with true_cfg_scale > 1)
for batches of 1, 2 and 4 requests: seconds per image, peak GPU memory, and what batching buys. The text
encoder and the VAE are left out (a few percent of the time); the note in the output says so.
Prepared to finish inside 8 minutes on one H100 or H200 (weights in bfloat16: about 41 GB); `--budget-s`
skips the batches that would not fit and says so in the output.

    python benchmarks/gpu_generate.py                 # the real size, on cuda
    python benchmarks/gpu_generate.py --tiny          # a 2-layer check that runs anywhere (CPU)

A bare GPU machine has torch and transformers but not diffusers (pure Python). Bring its wheel along in an
ignored folder and install it there without the network:

    python -m pip download diffusers==0.42.1 --no-deps -d dist/gpu-wheels        # here, once (about 5 MB)
    # on the GPU machine (the device tool: carry ["dist/gpu-wheels"]):
    python benchmarks/gpu_generate.py --wheels dist/gpu-wheels --out "$OUT/gpu_generate.json"

`--wheels` installs every wheel of the folder with pip --no-index --no-deps when diffusers is missing.
Decision the figures inform: whether the generator server should batch requests (a batch of N pays when
seconds_per_image falls well below batch 1's; the memory column says how large N can be).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

REAL = {"patch_size": 2, "in_channels": 64, "out_channels": 16, "num_layers": 60, "attention_head_dim": 128,
        "num_attention_heads": 24, "joint_attention_dim": 3584, "guidance_embeds": False, "axes_dims_rope": (16, 56, 56)}
TINY = {**REAL, "num_layers": 2, "attention_head_dim": 16, "num_attention_heads": 2, "joint_attention_dim": 32,
        "axes_dims_rope": (4, 6, 6)}


def main() -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="2 layers, 64x64, 2 steps: checks the script itself")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batches", default="1,2,4")
    parser.add_argument("--text-tokens", type=int, default=256)
    parser.add_argument("--attention-backend", default=None, help="e.g. flash, _native_cudnn")
    parser.add_argument("--wheels", type=Path, default=None, help="folder of wheels to install if diffusers is missing")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip batches that would end past this")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    _ensure_diffusers(args.wheels)
    config, size, steps = (TINY, 64, 2) if args.tiny else (REAL, args.size, args.steps)
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32

    from diffusers import QwenImageTransformer2DModel

    started = time.perf_counter()
    torch.set_default_dtype(dtype)  # initialise straight in the target dtype: fp32 would need twice the memory
    with torch.device(device):
        model = QwenImageTransformer2DModel(**config).eval()
    torch.set_default_dtype(torch.float32)
    if args.attention_backend:
        model.set_attention_backend(args.attention_backend)
    build_s = time.perf_counter() - started
    parameters = sum(p.numel() for p in model.parameters())
    side = size // 16  # VAE /8, then 2x2 patches
    results: list[dict[str, object]] = []
    skipped: list[int] = []
    last_per_image = 0.0
    for batch in [int(b) for b in args.batches.split(",")]:
        if last_per_image and time.perf_counter() - started + last_per_image * batch * 1.3 > args.budget_s:
            skipped.append(batch)  # would overrun the machine's time: report what was measured
            continue
        latents = torch.randn(batch, side * side, config["in_channels"], device=device, dtype=dtype)
        text = torch.randn(batch, args.text_tokens, config["joint_attention_dim"], device=device, dtype=dtype)
        mask = torch.ones(batch, args.text_tokens, device=device, dtype=torch.long)
        shapes = [[(1, side, side)]] * batch

        inputs = {"hidden_states": latents, "encoder_hidden_states": text, "encoder_hidden_states_mask": mask,
                  "img_shapes": shapes, "return_dict": False}

        def step(t: float, inputs: dict = inputs, batch: int = batch) -> torch.Tensor:
            timestep = torch.full((batch,), t, device=device, dtype=dtype)
            cond = model(timestep=timestep, **inputs)[0]
            uncond = model(timestep=timestep, **inputs)[0]  # true CFG: a second pass (same inputs here)
            return uncond + 4.0 * (cond - uncond)

        with torch.inference_mode():
            step(1.0)  # warm-up (kernels, allocator)
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            for i in range(steps):
                out = step(1.0 - i / steps)
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
        assert out.shape == latents.shape
        last_per_image = seconds / batch
        results.append({
            "batch": batch,
            "seconds": round(seconds, 2),
            "seconds_per_image": round(seconds / batch, 4),
            "_per_image": seconds / batch,  # unrounded, for the speed-up below
            "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1) if device == "cuda" else None,
        })
    base = float(results[0]["_per_image"])  # type: ignore[arg-type]
    for row in results:
        per_image = float(row.pop("_per_image"))  # type: ignore[arg-type]
        row["speedup_per_image_vs_batch_1"] = round(base / per_image, 2) if per_image > 0 else None
    report = {
        "benchmark": "gpu_generate",
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "config": "tiny check" if args.tiny else "Qwen-Image transformer (random weights)",
        "parameters_b": round(parameters / 1e9, 3),
        "size": f"{size}x{size}", "steps": steps, "true_cfg": True, "text_tokens": args.text_tokens,
        "build_s": round(build_s, 1),
        "batches": results,
        "skipped_batches": skipped,
        "note": "denoising loop only; text encoder and VAE decode not included",
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return report


def _ensure_diffusers(wheels: Path | None) -> None:
    try:
        import diffusers  # noqa: F401
    except ImportError:
        found = sorted(wheels.glob("*.whl")) if wheels is not None else []
        if not found:
            raise SystemExit("diffusers is missing: pass --wheels DIR (see the docstring)") from None
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", *map(str, found)], check=True)


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
