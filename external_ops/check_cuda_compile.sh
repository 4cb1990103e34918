#!/usr/bin/env bash
# Compile check of the CUDA build of the op, no GPU needed; fails on any compile error or warning.
#  1. csrc/layer_norm_cuda.cu (the kernels; no Paddle headers) with nvcc for sm_75, sm_80 and sm_90; then the GPU
#     check's library (gpu_check/build.sh: the kernels + gpu_check/shim.cu linked into a .so, same flags and
#     targets), whose extern "C" entry points must be exported, so the harness that runs the kernels keeps building.
#  2. The Paddle side of the CUDA build (layer_norm_op.cc and the bridge layer_norm_cuda_op.cc with
#     PADDLEMIX_EVA_WITH_CUDA) compiled by the host compiler (through nvcc) against the headers of the Paddle that $PYTHON
#     imports (default: python3). A CPU Paddle's headers lack the CUDA-only `Tensor::stream()`, so that one call
#     is left out (see stream_of in layer_norm_cuda_op.cc); a CUDA Paddle's headers need cuBLAS/cuDNN headers.
# Skips (exit 0, with a message) where nvcc is not installed; step 2 also where Paddle is not importable.
set -euo pipefail
PYTHON=${PYTHON:-python3}
case "$PYTHON" in */*) PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" ;; esac
cd "$(dirname "$0")"
NVCC=$(command -v nvcc || true)
if [ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ]; then NVCC=/usr/local/cuda/bin/nvcc; fi
if [ -z "$NVCC" ]; then
  echo "check_cuda_compile: nvcc not found, CUDA compile check skipped"
  exit 0
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

"$NVCC" -c -std=c++17 -O3 --expt-relaxed-constexpr -Werror all-warnings -Xcompiler -fPIC,-Wall \
  -gencode arch=compute_75,code=sm_75 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
  -Icsrc csrc/layer_norm_cuda.cu -o "$OUT/layer_norm_cuda.o"
echo "check_cuda_compile: csrc/layer_norm_cuda.cu compiles (sm_75/80/90) with $("$NVCC" --version | tail -1)"

NVCC="$NVCC" bash gpu_check/build.sh "$OUT/libln_gpu_check.so" 75 80 90
if command -v nm > /dev/null; then
  EXPORTED=$(nm -D --defined-only "$OUT/libln_gpu_check.so")
  for sym in pme_ln_forward pme_ln_backward pme_ln_backward_workspace_floats pme_ln_set_device pme_ln_error_string \
    pme_ln_runtime_version pme_ln_driver_version; do
    if ! grep -qE " T $sym\$" <<< "$EXPORTED"; then
      echo "check_cuda_compile: gpu_check library does not export $sym" >&2
      exit 1
    fi
  done
fi
echo "check_cuda_compile: gpu_check/ library (shim.cu + kernels, sm_75/80/90) builds and exports its C API"

# Paddle's include dirs as cpp_extension passes them, and Python's (extension.h includes pybind11)
if ! INCLUDES=$("$PYTHON" -W ignore -c '
import sysconfig
from paddle.utils.cpp_extension.extension_utils import find_paddle_includes
print("\n".join(find_paddle_includes(False) + [sysconfig.get_paths()["include"]]))' 2>/dev/null); then
  echo "check_cuda_compile: Paddle not importable by $PYTHON, Paddle-side check of the CUDA build skipped"
  exit 0
fi
# nvcc hands .cc files to the host compiler with the toolkit's include path (cuda_runtime.h) added
FLAGS=(-c -x c++ -std=c++17 -Xcompiler -fPIC,-fopenmp,-Wall,-Wextra,-Werror -DPADDLE_WITH_CUSTOM_KERNEL
       -DPADDLEMIX_EVA_WITH_CUDA -Icsrc)
while IFS= read -r dir; do FLAGS+=(-isystem "$dir"); done <<< "$INCLUDES"
for src in layer_norm_op layer_norm_cuda_op; do
  "$NVCC" "${FLAGS[@]}" "csrc/$src.cc" -o "$OUT/$src.o"
done
echo "check_cuda_compile: layer_norm_op.cc and layer_norm_cuda_op.cc compile (CUDA branches) against Paddle's headers"
