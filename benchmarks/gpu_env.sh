# Sourced by the *_gpu.sh scripts: the run-time environment of binaries built with the cuda preset
# on a machine that has a GPU, its driver and a torch 2.11 cu130 Python install (libtorch and the
# CUDA runtime come from that install; nvcc is not needed). Expects $build; sets python,
# LD_LIBRARY_PATH.
python=${PYTHON:-python3}
torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
site=$("$python" -c 'import site; print(site.getsitepackages()[0])')
cudart_dir=$(find "$site/nvidia" /usr/local/cuda/lib64 /usr/local/cuda/lib -name 'libcudart.so.13*' -printf '%h\n' 2>/dev/null | head -1)
# $build/lib: shared libraries carried along with the binaries (libbenchmark), if any
export LD_LIBRARY_PATH="$build/lib:$torch_lib:${cudart_dir:+$cudart_dir:}${LD_LIBRARY_PATH:-}"
