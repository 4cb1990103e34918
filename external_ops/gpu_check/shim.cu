// extern "C" face of the launchers in ../csrc/layer_norm_cuda.h, for ctypes (lib.py): the C++ launchers sit in a
// namespace and take an enum class, neither of which ctypes can name. Dtypes travel as plain ints, the stream as
// the void* PyTorch hands out (`torch.cuda.current_stream().cuda_stream`), errors as cudaError_t ints.
// Only the pme_ln_* functions are exported (build.sh compiles with hidden visibility).
#include <cuda_runtime.h>

#include <cstdint>

#include "layer_norm_cuda.h"

#define PME_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using paddlemix_eva::LnDtype;

// Codes shared with lib.py's DTYPE_CODES; anything else is refused rather than cast into the enum.
bool to_dtype(int code, LnDtype* out) {
  switch (code) {
    case 0:
      *out = LnDtype::kFloat32;
      return true;
    case 1:
      *out = LnDtype::kFloat64;
      return true;
    case 2:
      *out = LnDtype::kFloat16;
      return true;
    case 3:
      *out = LnDtype::kBFloat16;
      return true;
    default:
      return false;
  }
}

// The (X, scale) pairs the op accepts (layer_norm_op.cc): the scale has X's dtype or float32. The launchers
// themselves do not check this (float32 X ignores the scale's dtype), so the shim does.
bool to_dtype_pair(int x_code, int w_code, LnDtype* x, LnDtype* w) {
  if (!to_dtype(x_code, x) || !to_dtype(w_code, w)) return false;
  return *w == *x || *w == LnDtype::kFloat32;
}

}  // namespace

PME_EXPORT int pme_ln_forward(int x_dtype, int w_dtype, const void* x, const void* scale, const void* bias, void* y,
                              float* mean, float* inv_std, int64_t rows, int64_t hidden, float epsilon,
                              void* stream) {
  LnDtype xd, wd;
  if (!to_dtype_pair(x_dtype, w_dtype, &xd, &wd)) return cudaErrorInvalidValue;
  return paddlemix_eva::launch_layer_norm_forward(xd, wd, x, scale, bias, y, mean, inv_std, rows, hidden, epsilon,
                                                  static_cast<cudaStream_t>(stream));
}

PME_EXPORT int pme_ln_backward(int x_dtype, int w_dtype, const void* x, const void* scale, const float* mean,
                               const float* inv_std, const void* dy, void* dx, void* dscale, void* dbias,
                               float* workspace, int64_t rows, int64_t hidden, void* stream) {
  LnDtype xd, wd;
  if (!to_dtype_pair(x_dtype, w_dtype, &xd, &wd)) return cudaErrorInvalidValue;
  return paddlemix_eva::launch_layer_norm_backward(xd, wd, x, scale, mean, inv_std, dy, dx, dscale, dbias, workspace,
                                                   rows, hidden, static_cast<cudaStream_t>(stream));
}

PME_EXPORT int64_t pme_ln_backward_workspace_floats(int64_t rows, int64_t hidden) {
  return paddlemix_eva::layer_norm_backward_workspace_floats(rows, hidden);
}

// The kernels run on this library's (static) CUDA runtime, not PyTorch's: point it at PyTorch's device.
PME_EXPORT int pme_ln_set_device(int device) { return cudaSetDevice(device); }

PME_EXPORT const char* pme_ln_error_string(int error) { return cudaGetErrorString(static_cast<cudaError_t>(error)); }

// Version of the CUDA runtime linked into this library (e.g. 13000); needs no GPU.
PME_EXPORT int pme_ln_runtime_version() {
  int version = 0;
  return cudaRuntimeGetVersion(&version) == cudaSuccess ? version : -1;
}

// Highest CUDA version the installed driver supports, 0 without a driver, -1 on error.
PME_EXPORT int pme_ln_driver_version() {
  int version = 0;
  return cudaDriverGetVersion(&version) == cudaSuccess ? version : -1;
}
