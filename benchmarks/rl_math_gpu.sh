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

source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
status=0
"$build/tests/grpo_cuda_tests" 2>&1 | tee "$out/cuda_tests.log" || status=1
"$build/benchmarks/advantage_bench" --benchmark_out="$out/advantage.json" --benchmark_out_format=json || status=1
"$build/benchmarks/loss_bench" --benchmark_out="$out/loss.json" --benchmark_out_format=json || status=1
"$build/benchmarks/logprob_bench" --device=cuda --benchmark_out="$out/logprob.json" --benchmark_out_format=json || status=1
exit $status
