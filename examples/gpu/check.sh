#!/usr/bin/env bash
# The GPU path, measured (examples/gpu/check.py): bf16 LoRA SFT and full fine-tuning of a 1.5B-shaped model
# with MFU, GRPO with transformers generation, transformers vs vLLM generation. ≤ 5 minutes on one GPU; prints
# one JSON summary (also written to $OUT/gpu-check.json when OUT is set, else examples/gpu/gpu-check.json).
#
# Run as: examples/gpu/check.sh            (or: make gpu-check)
#
# On a machine where kaizen is installed (pip install -e '.[dev]') it just runs. On a bare CUDA image that has
# torch, transformers, peft and accelerate but not TRL, datasets or pydantic, carry the wheels
# `make gpu-wheels` downloads into examples/gpu/wheels/ (Python 3.12, manylinux x86-64; ~10 MB): they are
# installed into a scratch folder and kaizen itself is imported from this checkout (no install needed).
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1

if ! "$PY" -c "import trl, datasets, pydantic, pydantic_settings" >/dev/null 2>&1; then
  if ls examples/gpu/wheels/*.whl >/dev/null 2>&1; then
    SITE=$(mktemp -d /tmp/kaizen-gpu-site.XXXXXX)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" examples/gpu/wheels/*.whl \
      || { echo '{"ok": false, "error": "installing the carried wheels (examples/gpu/wheels) failed"}'; exit 2; }
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
# kaizen is imported as kaizen.tools / kaizen.agent / kaizen.workflows (a namespace package over this
# checkout's folders); without an install, a folder of links stands in for it.
if ! "$PY" -c "import kaizen.tools.train.launch" >/dev/null 2>&1; then
  SHIM=$(mktemp -d /tmp/kaizen-gpu-src.XXXXXX)
  mkdir -p "$SHIM/kaizen"
  for d in tools agent workflows; do ln -s "$REPO/$d" "$SHIM/kaizen/$d"; done
  export PYTHONPATH="$SHIM${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PY" examples/gpu/check.py --out "${OUT:-examples/gpu}/gpu-check.json" "$@"
