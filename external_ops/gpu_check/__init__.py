"""GPU check of FusedLayerNorm's CUDA kernels without Paddle: nvcc builds csrc/layer_norm_cuda.cu with the
extern "C" shim.cu into a .so (build.sh); ctypes drives its launchers on PyTorch-owned buffers and PyTorch's
stream (lib.py); outputs are checked against torch.nn.functional.layer_norm + autograd in float64 under the rule
of tolerance.py; bandwidth is tabled against PyTorch's kernels and a device-to-device copy.

    bash external_ops/gpu_check/run.sh [--quick] [--out results.json] [--out results.md]

Modules: cases (what is checked), inputs, reference, tolerance, compare, lib, correctness, bandwidth + timing,
results + report, env, cli (exit status 0 pass, 1 mismatch, 2 usage, 3 no CUDA device, 4 set-up problem).
"""
