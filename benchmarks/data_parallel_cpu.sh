#!/usr/bin/env bash
# One process against two data-parallel ranks (torchrun, Gloo) on the same CPU cores, side by side
# in one run: the `tiny` config for STEPS steps each, the same seed, so both sample the same
# completions. The single process gets every core as intra-op threads; the ranks one core each.
#
#   benchmarks/data_parallel_cpu.sh [STEPS=4] [OUT=/tmp/grpo-data-parallel]
#
# Needs build/cpu/examples/longwriter-zero (scripts/setup builds it) and .venv (torchrun). Prints the
# mean step time over steps 2..STEPS (step 1 warms up), the split into sampling / scoring / update,
# tokens per second, and the ratio; writes OUT/{one,two}/metrics.jsonl.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
steps=${1:-4}
out=${2:-/tmp/grpo-data-parallel}
lwz="$root/build/cpu/examples/longwriter-zero"
cores=$(nproc)
cd "$root"
rm -rf "$out/one" "$out/two"
mkdir -p "$out"
# The writing reward model once, shared by both runs (its training is not what is measured).
[ -f "$out/rm/model.safetensors" ] || OMP_NUM_THREADS=$cores "$lwz" train-rm --config examples/configs/tiny --output "$out/rm" 2>&1 | tail -1
common=(train --config examples/configs/tiny --set "trainer.steps=$steps" --set "trainer.save_final=false"
        --set "trainer.log_samples_every=0" --set "rewards.writing.model=\"$out/rm\"")
echo "one process, $cores threads"
OMP_NUM_THREADS=$cores "$lwz" "${common[@]}" --set "output_dir=\"$out/one\"" 2>&1 | grep -E "^step" || true
echo "two ranks (torchrun --nproc_per_node 2, Gloo), $((cores / 2)) thread(s) each"
OMP_NUM_THREADS=$((cores / 2 > 0 ? cores / 2 : 1)) "$root/.venv/bin/torchrun" --standalone --nproc_per_node 2 --no-python \
    "$lwz" "${common[@]}" --set "output_dir=\"$out/two\"" 2>&1 | grep -E "^step" || true
"$root/.venv/bin/python" "$root/benchmarks/compare_runs.py" "$out" "one=1 process" "two=2 ranks"
