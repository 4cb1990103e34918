// CPU kernels of the fused linear, SwiGLU and RoPE ops (float32, contiguous inputs; the *_op.cc files check that).
//
// Backward kernels get the `need_*` flags the Python wrapper derived from stop_gradient: a gradient nobody needs
// is returned as a 0-element tensor (Paddle discards it) instead of being computed.
#pragma once

#include <cstdint>
#include <vector>

#include "paddle/extension.h"

namespace paddlemix_eva {

// out[..., N] = x[..., K] @ weight[K, N] (+ bias[N]) (+ residual[..., N]); bias / residual may be null.
paddle::Tensor linear_forward_cpu(const paddle::Tensor& x, const paddle::Tensor& weight, const paddle::Tensor* bias,
                                  const paddle::Tensor* residual);

// {dx, dweight, dbias (if has_bias), dresidual (if has_residual; dy itself)} for dy = d loss / d out.
std::vector<paddle::Tensor> linear_backward_cpu(const paddle::Tensor& x, const paddle::Tensor& weight,
                                                const paddle::Tensor& dy, bool has_bias, bool has_residual,
                                                bool need_dx, bool need_dweight, bool need_dbias);

// out[..., H] = silu(h[..., :H]) * h[..., H:]
paddle::Tensor swiglu_forward_cpu(const paddle::Tensor& h);
paddle::Tensor swiglu_backward_cpu(const paddle::Tensor& h, const paddle::Tensor& dy);

// qkv [B, N, 3, heads, d] with q and k rotated by the tables cos / sin [N, d]; v copied.
paddle::Tensor rope_qkv_forward_cpu(const paddle::Tensor& qkv, const paddle::Tensor& cos, const paddle::Tensor& sin);
paddle::Tensor rope_qkv_backward_cpu(const paddle::Tensor& dy, const paddle::Tensor& cos, const paddle::Tensor& sin);

// The same rotation writing q (times q_scale), k and v as three [B, heads, N, d] tensors, and its transpose.
std::vector<paddle::Tensor> rope_qkv_split_forward_cpu(const paddle::Tensor& qkv, const paddle::Tensor& cos,
                                                       const paddle::Tensor& sin, float q_scale);
paddle::Tensor rope_qkv_split_backward_cpu(const paddle::Tensor& dq, const paddle::Tensor& dk,
                                           const paddle::Tensor& dv, const paddle::Tensor& cos,
                                           const paddle::Tensor& sin, float q_scale);

// softmax over the last axis, and its backward from the output: dx = y * (dy - sum(dy * y))
paddle::Tensor softmax_forward_cpu(const paddle::Tensor& x);
paddle::Tensor softmax_backward_cpu(const paddle::Tensor& y, const paddle::Tensor& dy);

}  // namespace paddlemix_eva
