#!/usr/bin/env bash
# The GPU half of the model checks: the model's CUDA tests and the decode benchmark against
# transformers, run from binaries built with the cuda preset (where this runs only a GPU, its
# driver and a torch 2.11 cu130 Python install with transformers are needed, not nvcc).
#
#   cmake --preset cuda -B build/h5-model-cuda
#   cmake --build build/h5-model-cuda --target grpo_cuda_tests decode_bench
#   benchmarks/model_gpu.sh build/h5-model-cuda OUT_DIR
#
# Writes OUT_DIR/{model_cuda_tests.log,decode.json,decode.md} and prints the decode table.
set -uo pipefail
build=${1:-build/h5-model-cuda}
out=${2:-.}
mkdir -p "$out"

source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv
status=0
"$build/tests/grpo_cuda_tests" "[model]" 2>&1 | tee "$out/model_cuda_tests.log" || status=1
"$python" "$(dirname "$0")/decode_vs_hf.py" --bench "$build/benchmarks/decode_bench" --out "$out/decode.json" \
  2>&1 | tee "$out/decode.md" || status=1
exit $status
