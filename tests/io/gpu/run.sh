#!/usr/bin/env bash
# The H100/H200 check of grpo::io's CUDA path (README.md). Run from the repository root on the GPU
# machine; needs python3 with torch + safetensors, cmake, ninja, nvcc, and the nlohmann headers
# (system-wide, or a copy named by GRPO_NLOHMANN_INCLUDE).
set -euo pipefail
scratch=${SCRATCH:-/tmp/grpo-safetensors-cuda}
mkdir -p "$scratch"
python3 - "$scratch" <<'PY'
import sys, torch
from safetensors.torch import save_file
torch.manual_seed(0)
t = {f"model.layers.{i}.mlp.weight": torch.randn(4096, 4096).to(torch.bfloat16) for i in range(64)}  # 2 GiB
t["small_f32"] = torch.randn(3, 5)
t["small_f16"] = torch.randn(7).half()
t["norm_bf16"] = torch.randn(4096).to(torch.bfloat16)
save_file(t, f"{sys.argv[1]}/check.safetensors", metadata={"format": "pt"})
PY
cmake -S tests/io/gpu -B "$scratch/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')" \
  -DGRPO_NLOHMANN_INCLUDE="${GRPO_NLOHMANN_INCLUDE:-}" >/dev/null
cmake --build "$scratch/build" >/dev/null
"$scratch/build/safetensors_cuda_check" "$scratch/check.safetensors" "$scratch"
python3 - "$scratch" <<'PY'
import sys, time, torch
from safetensors.torch import load_file
path = f"{sys.argv[1]}/check.safetensors"
load_file(path, device="cuda"); torch.cuda.synchronize()
times = []
for _ in range(2):
    start = time.perf_counter(); t = load_file(path, device="cuda"); torch.cuda.synchronize()
    times.append(time.perf_counter() - start); del t
start = time.perf_counter()
t = {k: v.float() for k, v in load_file(path, device="cuda").items()}; torch.cuda.synchronize()
then_float = time.perf_counter() - start
del t
import os
from safetensors.torch import save_file
t = load_file(path, device="cuda"); torch.cuda.synchronize()
start = time.perf_counter(); save_file(t, f"{sys.argv[1]}/py_save.safetensors", metadata={"format": "pt"})
no_sync = time.perf_counter() - start
fd = os.open(f"{sys.argv[1]}/py_save.safetensors", os.O_RDONLY); os.fsync(fd); os.close(fd)
with_sync = time.perf_counter() - start
print({"python_safetensors_cuda_same_dtype_s": [round(x, 4) for x in times],
       "python_safetensors_cuda_then_float_s": round(then_float, 4),
       "python_save_file_from_cuda_s": round(no_sync, 4), "python_save_file_from_cuda_plus_fsync_s": round(with_sync, 4)})
PY
