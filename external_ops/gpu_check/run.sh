#!/usr/bin/env bash
# One command on a GPU machine with nvcc and a CUDA build of PyTorch (no Paddle, no install of this project):
# builds the check's library for the visible GPUs' architectures into a temporary directory, then runs the
# correctness sweep and the bandwidth table (python external_ops/gpu_check, see cli.py).
#   bash external_ops/gpu_check/run.sh [--quick] [--out results.json] [--out results.md] [more cli.py options]
# PYTHON: the interpreter with torch (default python3). GPU_CHECK_ARCHS="90": build for these instead of the
# detected architectures. NVCC: the nvcc to use. Exit status: cli.py's (0 pass, 1 mismatch, 3 no CUDA device,
# 4 set-up problem, also a failed build).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python3}
for arg in "$@"; do
  case "$arg" in -h | --help) exec "$PYTHON" "$HERE" --help ;; esac
done
NVCC=${NVCC:-$(command -v nvcc || true)}
if [ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ]; then NVCC=/usr/local/cuda/bin/nvcc; fi
if [ -z "$NVCC" ]; then
  echo "gpu_check/run.sh: nvcc not found (set NVCC or put the CUDA toolkit's bin/ on PATH)" >&2
  exit 4
fi
export NVCC

# sm_XY of every visible GPU, without duplicates; empty without a GPU (the Python side then says so)
detect_archs() {
  local caps=""
  if command -v nvidia-smi > /dev/null 2>&1; then
    caps=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2> /dev/null | tr -d ' .' | grep -E '^[0-9]+$')
  fi
  if [ -z "$caps" ]; then
    caps=$("$PYTHON" -c 'import torch
for i in range(torch.cuda.device_count()): print("%d%d" % torch.cuda.get_device_capability(i))' 2> /dev/null)
  fi
  echo "$caps" | sort -u | tr '\n' ' '
}

read -r -a ARCHS <<< "${GPU_CHECK_ARCHS:-$(detect_archs)}"
if [ ${#ARCHS[@]} -eq 0 ]; then
  echo "gpu_check/run.sh: no GPU detected; building for the CI targets sm_75/80/90" >&2
  ARCHS=(75 80 90)
fi
SUPPORTED=$("$NVCC" --list-gpu-arch 2> /dev/null || true)
for arch in "${ARCHS[@]}"; do
  if [ -n "$SUPPORTED" ] && ! grep -qx "compute_$arch" <<< "$SUPPORTED"; then
    echo "gpu_check/run.sh: $NVCC cannot build for sm_$arch (it knows:" $SUPPORTED"); use an nvcc that" \
      "does (NVCC=...) or other architectures (GPU_CHECK_ARCHS=...)" >&2
    exit 4
  fi
done

BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
LIB="$BUILD/libln_gpu_check.so"
SECONDS=0
if ! bash "$HERE/build.sh" "$LIB" "${ARCHS[@]}"; then
  echo "gpu_check/run.sh: building the library failed" >&2
  exit 4
fi
VERSION=$("$NVCC" --version | grep -o 'V[0-9][0-9.]*' | tail -1)
INFO="nvcc $VERSION, $(printf 'sm_%s ' "${ARCHS[@]}" | sed 's/ $//'), built in ${SECONDS}s"
echo "gpu_check/run.sh: built $LIB ($INFO)" >&2
"$PYTHON" "$HERE" --lib "$LIB" --build-info "$INFO" "$@"
