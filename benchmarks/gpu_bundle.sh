#!/usr/bin/env bash
# Builds every GPU check's binary with the cuda preset here (no GPU needed) and copies them, with
# the shared libraries they need beyond torch's, into the ignored folder .devdeps/gpu, which the
# device tool carries to the GPU machine, where benchmarks/gpu_run.sh runs them:
#
#   benchmarks/gpu_bundle.sh                      # here: build + copy (a few minutes, ccache warm)
#   run(command="benchmarks/gpu_run.sh .devdeps/gpu $OUT", carry=[".devdeps/gpu"], timeout_s=540)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
targets=(grpo_cuda_tests decode_bench logprob_bench lora_bench longwriter-zero)
[[ -d build/cuda ]] || cmake --preset cuda
cmake --build --preset cuda --target "${targets[@]}"
out=.devdeps/gpu
rm -rf "$out" && mkdir -p "$out/tests" "$out/benchmarks" "$out/examples" "$out/lib"
cp build/cuda/tests/grpo_cuda_tests "$out/tests/"
cp build/cuda/benchmarks/decode_bench build/cuda/benchmarks/logprob_bench build/cuda/benchmarks/lora_bench "$out/benchmarks/"
cp build/cuda/examples/longwriter-zero "$out/examples/"
# Google Benchmark is a Debian package here, not on the GPU machine.
for bin in "$out"/benchmarks/*; do
  ldd "$bin" | awk '/libbenchmark/ { print $3 }' | xargs -r -I{} cp -L {} "$out/lib/"
done
strip --strip-debug "$out"/tests/* "$out"/benchmarks/* "$out"/examples/* 2>/dev/null || true
du -sh "$out"
