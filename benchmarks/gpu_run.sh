#!/usr/bin/env bash
# Every GPU check of the open issues in one run on a lent GPU, most important first, each under its
# own time limit so that one slow part cannot eat the others (at most 8.5 minutes in all). Binaries come from
# benchmarks/gpu_bundle.sh (carried as .devdeps/gpu); the machine needs its driver and a torch 2.11
# cu130 Python install with transformers (libtorch and the CUDA runtime come from there).
#
#   benchmarks/gpu_run.sh [BUNDLE=.devdeps/gpu] [OUT=.]
#
# 1. the CUDA tests (grpo_cuda_tests: RL math, loss, token log-probs, model, CUDA-graph decode)
# 2. one GRPO step, Qwen2.5-0.5B shape, G = 8, 2,048 new tokens
#    (benchmarks/configs/grpo_step_qwen2.5-0.5b.json): time split and peak memory in metrics.jsonl
# 3. decode throughput against transformers at batch 1, 16, 64, eager and CUDA graphs
# 4. token log-probs on CUDA: chunked vs naive, vocabulary tiles vs whole rows
# 5. one training step with LoRA adapters against full fine-tuning (lora_bench)
# Writes OUT/{cuda_tests.log, grpo_step/metrics.jsonl, grpo_step.log, decode.json, decode.md,
# logprob.json, logprob.log, lora.json, lora.log}.
set -uo pipefail
build=${1:-.devdeps/gpu}
out=${2:-.}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$out"
source "$here/gpu_env.sh"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
status=0
step() { echo "=== $1 ($(date +%T))"; }

step "CUDA tests"
timeout 60 "$build/tests/grpo_cuda_tests" 2>&1 | tail -40 | tee "$out/cuda_tests.log" || status=1

step "one GRPO step, Qwen2.5-0.5B shape"
timeout 135 "$build/examples/longwriter-zero" train --config "$here/configs/grpo_step_qwen2.5-0.5b.json" \
    --set "output_dir=\"$(cd "$out" && pwd)/grpo_step\"" --set 'parallel={"tensor": 1}' 2>&1 | tail -20 \
    | tee "$out/grpo_step.log" || status=1
[[ -f "$out/grpo_step/metrics.jsonl" ]] && "$python" - "$out/grpo_step/metrics.jsonl" <<'PY'
import json, sys
row = [json.loads(l) for l in open(sys.argv[1])][-1]
print("time:", {k: round(v, 2) for k, v in row["time"].items()}, "memory:", row.get("memory"),
      "completion tokens:", row["completion_tokens"])
PY

step "decode vs transformers"
timeout 240 "$python" "$here/decode_vs_hf.py" --bench "$build/benchmarks/decode_bench" --repeats 2 \
    --out "$out/decode.json" 2>&1 | tee "$out/decode.md" || status=1

step "token log-probs"
timeout 45 "$build/benchmarks/logprob_bench" --device=cuda --max_tokens=4096 \
    --benchmark_out="$out/logprob.json" --benchmark_out_format=json 2>&1 | tail -15 | tee "$out/logprob.log" || status=1

step "LoRA vs full fine-tuning, one training step"
timeout 30 "$build/benchmarks/lora_bench" --device=cuda --layers=8 \
    --benchmark_out="$out/lora.json" --benchmark_out_format=json 2>&1 | tail -6 | tee "$out/lora.log" || status=1
step "done"
exit $status
