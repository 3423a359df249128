#!/usr/bin/env bash
# benchmarks/gpu_grpo.py on a bare GPU machine (the device tool), which has torch, accelerate, aiohttp, yarl,
# PIL, pyyaml, pyarrow and huggingface_hub but not TRL, datasets, the pydantic stack or the stand-ins' servers.
#
#   bash benchmarks/gpu_grpo.sh fetch   # here, once: the missing wheels into .whl/ (ignored by git), ~20 MB
#   bash benchmarks/gpu_grpo.sh run     # there, with carry [".whl"]: installs them into /tmp/site, then runs;
#                                       # the JSON goes to $OUT/gpu_grpo.json, the log to $OUT/gpu_grpo.log
# A device call:  run(command="bash benchmarks/gpu_grpo.sh run", carry=[".whl"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/.."

# The versions of constraints.txt (transformers too: the device's own may be older than the pinned one).
WHEELS=(trl==1.16.0 transformers==5.24.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
        pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
        typing-extensions==4.16.0 pydantic-settings==2.16.3 python-dotenv==1.2.4 json5==0.17.3
        fastapi==0.165.0 starlette==1.10.0 opentelemetry-api==1.45.2 uvicorn==0.54.0 python-multipart==0.0.34)

case "${1:-}" in
  fetch)
    exclude="$(git rev-parse --git-path info/exclude)"
    grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .whl "${WHEELS[@]}"
    ls .whl
    ;;
  run)
    out="${OUT:-outputs/gpu_grpo}"
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1
    python3 -m pip show torch accelerate aiohttp pyarrow huggingface_hub tokenizers 2>/dev/null \
      | grep -E '^(Name|Version)' > "$out/versions.txt" || true
    nvidia-smi --query-gpu=name,memory.total --format=csv >> "$out/versions.txt" 2>&1 || true
    python3 benchmarks/gpu_grpo.py "${@:2}" > "$out/gpu_grpo.json" 2> "$out/gpu_grpo.log" \
      || { tail -40 "$out/gpu_grpo.log"; exit 1; }
    cat "$out/gpu_grpo.json"
    ;;
  *)
    echo "usage: bash benchmarks/gpu_grpo.sh fetch | run [--turn-tokens N]" >&2
    exit 2
    ;;
esac
