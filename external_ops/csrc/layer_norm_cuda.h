// Launchers of the CUDA kernels of fused_layer_norm, on raw pointers (no Paddle types), so the .cu compiles with
// the CUDA toolkit alone. Same contract as layer_norm.h: [rows, hidden] contiguous rows, float32 statistics.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace paddlemix_eva {

enum class LnDtype { kFloat32, kFloat64, kFloat16, kBFloat16 };

// Floats of scratch memory `launch_layer_norm_backward` needs for the column partial sums.
int64_t layer_norm_backward_workspace_floats(int64_t rows, int64_t hidden);

cudaError_t launch_layer_norm_forward(LnDtype x_dtype, LnDtype w_dtype, const void* x, const void* scale,
                                      const void* bias, void* y, float* mean, float* inv_std, int64_t rows,
                                      int64_t hidden, float epsilon, cudaStream_t stream);

cudaError_t launch_layer_norm_backward(LnDtype x_dtype, LnDtype w_dtype, const void* x, const void* scale,
                                       const float* mean, const float* inv_std, const void* dy, void* dx,
                                       void* dscale, void* dbias, float* workspace, int64_t rows, int64_t hidden,
                                       cudaStream_t stream);

}  // namespace paddlemix_eva
