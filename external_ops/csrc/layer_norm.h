// FusedLayerNorm over the last dimension: shared declarations of the CPU and CUDA kernels.
//
// Contract of every kernel: x is a contiguous [rows, hidden] matrix (any leading dims flattened), scale and bias
// are [hidden]; y has x's dtype; mean and inv_std are float32 [rows]; all statistics are accumulated in float32
// (double for float64 inputs). Backward returns dx (x's dtype) and dscale / dbias (the scale's dtype).
#pragma once

#include <cstdint>
#include <vector>

#include "paddle/extension.h"

namespace paddlemix_eva {

std::vector<paddle::Tensor> layer_norm_forward_cpu(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                   const paddle::Tensor& bias, float epsilon, int64_t rows,
                                                   int64_t hidden);

std::vector<paddle::Tensor> layer_norm_backward_cpu(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                    const paddle::Tensor& mean, const paddle::Tensor& inv_std,
                                                    const paddle::Tensor& dy, int64_t rows, int64_t hidden);

#ifdef PADDLEMIX_EVA_WITH_CUDA
std::vector<paddle::Tensor> layer_norm_forward_cuda(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                    const paddle::Tensor& bias, float epsilon, int64_t rows,
                                                    int64_t hidden);

std::vector<paddle::Tensor> layer_norm_backward_cuda(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                     const paddle::Tensor& mean, const paddle::Tensor& inv_std,
                                                     const paddle::Tensor& dy, int64_t rows, int64_t hidden);
#endif

}  // namespace paddlemix_eva
