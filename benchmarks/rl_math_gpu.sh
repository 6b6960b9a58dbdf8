#!/usr/bin/env bash
# The GPU half of the RL-math checks: the CUDA tests and the advantage, loss and log-prob
# benchmarks, run from binaries built with the cuda preset (nvcc is not needed where this runs,
# only a GPU, the driver and a torch 2.11 cu130 Python install to load libtorch from).
#
#   cmake --preset cuda -B build/h2-rl-cuda
#   cmake --build build/h2-rl-cuda --target grpo_cuda_tests advantage_bench loss_bench logprob_bench
#   benchmarks/rl_math_gpu.sh build/h2-rl-cuda OUT_DIR
#
# Writes OUT_DIR/{cuda_tests.log,advantage.json,loss.json,logprob.json} and prints the tables.
set -uo pipefail
build=${1:-build/h2-rl-cuda}
out=${2:-.}
mkdir -p "$out"

python=${PYTHON:-python3}
torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
site=$("$python" -c 'import site; print(site.getsitepackages()[0])')
cudart_dir=$(find "$site/nvidia" /usr/local/cuda/lib64 /usr/local/cuda/lib -name 'libcudart.so.13*' -printf '%h\n' 2>/dev/null | head -1)
# $build/lib: shared libraries carried along with the binaries (libbenchmark), if any
export LD_LIBRARY_PATH="$build/lib:$torch_lib:${cudart_dir:+$cudart_dir:}${LD_LIBRARY_PATH:-}"

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
status=0
"$build/tests/grpo_cuda_tests" 2>&1 | tee "$out/cuda_tests.log" || status=1
"$build/benchmarks/advantage_bench" --benchmark_out="$out/advantage.json" --benchmark_out_format=json || status=1
"$build/benchmarks/loss_bench" --benchmark_out="$out/loss.json" --benchmark_out_format=json || status=1
"$build/benchmarks/logprob_bench" --device=cuda --benchmark_out="$out/logprob.json" --benchmark_out_format=json || status=1
exit $status
