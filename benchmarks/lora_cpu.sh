#!/usr/bin/env bash
# Full fine-tuning against LoRA adapters (policy.lora) on the same CPU, side by side in one run:
# the `tiny` config for STEPS steps each, the same seed and threads. Step 1 of both samples the
# same completions (the adapters start at B = 0, the base model); later steps differ, so compare
# the update time per trained token rather than whole steps.
#
#   benchmarks/lora_cpu.sh [STEPS=4] [RANK=8] [OUT=/tmp/grpo-lora]
#
# Needs build/cpu/examples/longwriter-zero and .venv. Prints the table of benchmarks/compare_runs.py,
# the trained parameters of each run and the size of its last checkpoint's optimizer state.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
steps=${1:-4}
rank=${2:-8}
out=${3:-/tmp/grpo-lora}
lwz="$root/build/cpu/examples/longwriter-zero"
cores=$(nproc)
cd "$root"
rm -rf "$out/full" "$out/lora"
mkdir -p "$out"
[ -f "$out/rm/model.safetensors" ] || OMP_NUM_THREADS=$cores "$lwz" train-rm --config examples/configs/tiny --output "$out/rm" 2>&1 | tail -1
common=(train --config examples/configs/tiny --set "trainer.steps=$steps" --set "trainer.save_every=$steps"
        --set "trainer.log_samples_every=0" --set "rewards.writing.model=\"$out/rm\"")
for run in full lora; do
  extra=()
  [ "$run" = lora ] && extra=(--set "policy.lora={\"rank\": $rank, \"alpha\": $((2 * rank))}")
  echo "$run"
  OMP_NUM_THREADS=$cores "$lwz" "${common[@]}" "${extra[@]}" --set "output_dir=\"$out/$run\"" 2>&1 \
      | grep -E "^step|parameters trained|tensors frozen" || true
done
"$root/.venv/bin/python" "$root/benchmarks/compare_runs.py" "$out" "full=full fine-tuning" "lora=LoRA rank $rank"
for run in full lora; do
  state="$out/$run/checkpoints/step-$(printf %06d "$steps")/optimizer.safetensors"
  echo "$run: optimizer state $(du -k "$state" | cut -f1) KiB, trained tokens per update second:" \
       "$("$root/.venv/bin/python" -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1]) if l.strip()][1:] or [0]; print(round(sum(x['trained_tokens'] for x in r)/sum(x['time']['update_s'] for x in r)))" "$out/$run/metrics.jsonl")"
done
