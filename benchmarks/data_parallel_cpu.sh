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
"$root/.venv/bin/python" - "$out" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def load(name):
    rows = [json.loads(l) for l in (out / name / "metrics.jsonl").read_text().splitlines() if l]
    timed = rows[1:] if len(rows) > 1 else rows
    mean = lambda key: sum(r["time"][key] for r in timed) / len(timed)
    tokens = sum(r["completion_tokens"]["sum"] for r in timed)
    return {"step_s": mean("step_s"), "sample_s": mean("sample_s"), "score_s": mean("score_s"),
            "update_s": mean("update_s"), "tokens_per_s": tokens / sum(r["time"]["step_s"] for r in timed),
            "tokens": [r["completion_tokens"]["sum"] for r in rows], "reward": [round(r["reward"], 6) for r in rows]}
one, two = load("one"), load("two")
print(f"| run | step s | sample s | score s | update s | tokens/s |")
print(f"|---|---|---|---|---|---|")
for name, r in (("1 process", one), ("2 ranks", two)):
    print(f"| {name} | {r['step_s']:.2f} | {r['sample_s']:.2f} | {r['score_s']:.2f} | {r['update_s']:.2f} | {r['tokens_per_s']:.0f} |")
print(f"ratio (1 process / 2 ranks step time): {one['step_s'] / two['step_s']:.2f}x")
print(f"same completions sampled (tokens per step): {one['tokens'] == two['tokens']}  {one['tokens']} vs {two['tokens']}")
EOF
