// Registration of the fused_layer_norm custom op: input checks, device dispatch, shape and dtype inference.
#include <sstream>
#include <string>

#include "layer_norm.h"

namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

bool is_supported_dtype(paddle::DataType dtype, bool on_gpu) {
  return dtype == paddle::DataType::FLOAT32 || dtype == paddle::DataType::FLOAT64 ||
         dtype == paddle::DataType::BFLOAT16 || (on_gpu && dtype == paddle::DataType::FLOAT16);
}

// Returns the hidden size after checking every contract the kernels rely on.
int64_t check_inputs(const paddle::Tensor& x, const paddle::Tensor& scale, const paddle::Tensor& bias) {
  const auto& shape = x.shape();
  PD_CHECK(!shape.empty(), "fused_layer_norm: X must have at least one dimension, got a 0-d tensor");
  const int64_t hidden = shape.back();
  PD_CHECK(hidden > 0, "fused_layer_norm: the last dimension of X must be positive, got X of shape ",
           shape_str(shape));
  PD_CHECK(scale.shape().size() == 1 && scale.shape()[0] == hidden, "fused_layer_norm: Scale must have shape [",
           hidden, "] (the last dimension of X ", shape_str(shape), "), got ", shape_str(scale.shape()));
  PD_CHECK(bias.shape().size() == 1 && bias.shape()[0] == hidden, "fused_layer_norm: Bias must have shape [",
           hidden, "] (the last dimension of X ", shape_str(shape), "), got ", shape_str(bias.shape()));
  PD_CHECK(is_supported_dtype(x.dtype(), x.is_gpu()),
           "fused_layer_norm: X must be float32, float64 or bfloat16 (float16 on GPU too), got ",
           phi::DataTypeToString(x.dtype()));
  PD_CHECK(scale.dtype() == bias.dtype(), "fused_layer_norm: Scale and Bias must share a dtype, got ",
           phi::DataTypeToString(scale.dtype()), " and ", phi::DataTypeToString(bias.dtype()));
  PD_CHECK(scale.dtype() == x.dtype() || scale.dtype() == paddle::DataType::FLOAT32,
           "fused_layer_norm: Scale must have X's dtype or float32, got ", phi::DataTypeToString(scale.dtype()),
           " for X of ", phi::DataTypeToString(x.dtype()));
  PD_CHECK(x.is_contiguous() && scale.is_contiguous() && bias.is_contiguous(),
           "fused_layer_norm: inputs must be contiguous (call .contiguous() on strided views)");
  PD_CHECK(scale.place() == x.place() && bias.place() == x.place(),
           "fused_layer_norm: Scale and Bias must be on X's device");
  return hidden;
}

}  // namespace

std::vector<paddle::Tensor> FusedLayerNormForward(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                  const paddle::Tensor& bias, float epsilon) {
  PD_CHECK(epsilon >= 0.0f, "fused_layer_norm: epsilon must be >= 0, got ", epsilon);
  const int64_t hidden = check_inputs(x, scale, bias);
  const int64_t rows = x.numel() / hidden;
  if (x.is_cpu()) return paddlemix_eva::layer_norm_forward_cpu(x, scale, bias, epsilon, rows, hidden);
#ifdef PADDLEMIX_EVA_WITH_CUDA
  if (x.is_gpu()) return paddlemix_eva::layer_norm_forward_cuda(x, scale, bias, epsilon, rows, hidden);
#endif
  PD_THROW("fused_layer_norm: no kernel for this device (the op was built for CPU",
#ifdef PADDLEMIX_EVA_WITH_CUDA
           " and CUDA"
#endif
           ")");
}

std::vector<paddle::Tensor> FusedLayerNormBackward(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                   const paddle::Tensor& mean, const paddle::Tensor& inv_std,
                                                   const paddle::Tensor& dy) {
  const int64_t hidden = x.shape().back();
  const int64_t rows = x.numel() / hidden;
  PD_CHECK(dy.shape() == x.shape() && dy.dtype() == x.dtype(),
           "fused_layer_norm_grad: the gradient of Y must have X's shape and dtype");
  PD_CHECK(dy.is_contiguous(), "fused_layer_norm_grad: the gradient of Y must be contiguous");
  if (x.is_cpu()) return paddlemix_eva::layer_norm_backward_cpu(x, scale, mean, inv_std, dy, rows, hidden);
#ifdef PADDLEMIX_EVA_WITH_CUDA
  if (x.is_gpu()) return paddlemix_eva::layer_norm_backward_cuda(x, scale, mean, inv_std, dy, rows, hidden);
#endif
  PD_THROW("fused_layer_norm_grad: no kernel for this device");
}

std::vector<std::vector<int64_t>> FusedLayerNormInferShape(const std::vector<int64_t>& x_shape,
                                                           const std::vector<int64_t>& /*scale_shape*/,
                                                           const std::vector<int64_t>& /*bias_shape*/) {
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < x_shape.size(); ++i) {
    if (x_shape[i] < 0) {  // a dynamic dimension (static graphs): the row count is dynamic too
      rows = -1;
      break;
    }
    rows *= x_shape[i];
  }
  return {x_shape, {rows}, {rows}};
}

std::vector<paddle::DataType> FusedLayerNormInferDtype(const paddle::DataType& x_dtype,
                                                       const paddle::DataType& /*scale_dtype*/,
                                                       const paddle::DataType& /*bias_dtype*/) {
  return {x_dtype, paddle::DataType::FLOAT32, paddle::DataType::FLOAT32};
}

PD_BUILD_OP(fused_layer_norm)
    .Inputs({"X", "Scale", "Bias"})
    .Outputs({"Y", "Mean", "InvStd"})
    .Attrs({"epsilon: float"})
    .SetKernelFn(PD_KERNEL(FusedLayerNormForward))
    .SetInferShapeFn(PD_INFER_SHAPE(FusedLayerNormInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FusedLayerNormInferDtype));

PD_BUILD_GRAD_OP(fused_layer_norm)
    .Inputs({"X", "Scale", "Mean", "InvStd", paddle::Grad("Y")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Scale"), paddle::Grad("Bias")})
    .SetKernelFn(PD_KERNEL(FusedLayerNormBackward));
