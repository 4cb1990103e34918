#!/usr/bin/env bash
# Builds the GPU check's shared library: the op's kernels (../csrc/layer_norm_cuda.cu, unchanged) and shim.cu, with
# the flags of check_cuda_compile.sh (any warning is an error), linked against the static CUDA runtime so the .so
# needs nothing from the toolkit at run time. Only the shim's pme_ln_* symbols are exported.
#   usage: build.sh OUTPUT.so [ARCH ...]     ARCH as in sm_ARCH (default: 75 80 90, the CI compile targets)
#   NVCC=/path/to/nvcc overrides the nvcc on PATH (or /usr/local/cuda/bin/nvcc).
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 OUTPUT.so [ARCH ...]" >&2
  exit 2
fi
OUTPUT=$1
shift
ARCHS=("$@")
[ ${#ARCHS[@]} -gt 0 ] || ARCHS=(75 80 90)
HERE=$(cd "$(dirname "$0")" && pwd)
NVCC=${NVCC:-$(command -v nvcc || true)}
if [ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ]; then NVCC=/usr/local/cuda/bin/nvcc; fi
if [ -z "$NVCC" ]; then
  echo "gpu_check/build.sh: nvcc not found (set NVCC or put the CUDA toolkit's bin/ on PATH)" >&2
  exit 4
fi
GENCODE=()
for arch in "${ARCHS[@]}"; do GENCODE+=(-gencode "arch=compute_$arch,code=sm_$arch"); done
"$NVCC" -shared -std=c++17 -O3 --expt-relaxed-constexpr -Werror all-warnings \
  -Xcompiler -fPIC,-Wall,-fvisibility=hidden -Xlinker -z,defs,--exclude-libs,ALL \
  "${GENCODE[@]}" -I"$HERE/../csrc" "$HERE/../csrc/layer_norm_cuda.cu" "$HERE/shim.cu" -o "$OUTPUT"
