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

python=${PYTHON:-python3}
torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
site=$("$python" -c 'import site; print(site.getsitepackages()[0])')
cudart_dir=$(find "$site/nvidia" /usr/local/cuda/lib64 /usr/local/cuda/lib -name 'libcudart.so.13*' -printf '%h\n' 2>/dev/null | head -1)
# $build/lib: shared libraries carried along with the binaries (libbenchmark), if any
export LD_LIBRARY_PATH="$build/lib:$torch_lib:${cudart_dir:+$cudart_dir:}${LD_LIBRARY_PATH:-}"
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv
status=0
"$build/tests/grpo_cuda_tests" "[model]" 2>&1 | tee "$out/model_cuda_tests.log" || status=1
"$python" "$(dirname "$0")/decode_vs_hf.py" --bench "$build/benchmarks/decode_bench" --out "$out/decode.json" \
  2>&1 | tee "$out/decode.md" || status=1
exit $status
