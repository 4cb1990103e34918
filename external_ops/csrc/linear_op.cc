// Registration of the fused linear ops: out = x @ weight (+ bias) (+ residual), float32 on CPU.
//
// One op per combination (fused_linear, fused_linear_bias, fused_linear_residual, fused_linear_bias_residual)
// rather than optional inputs, so each has a plain fixed signature and gradient list. All take the attributes
// need_dx / need_dweight / need_dbias (the wrapper's stop_gradient flags; need_dbias is ignored without a bias).
#include <string>

#include "fused_cpu_ops.h"

namespace {

using paddle::Tensor;

void check_tensor(const Tensor& t, const char* name) {
  PD_CHECK(t.is_cpu(), "fused_linear: ", name, " must be a CPU tensor");
  PD_CHECK(t.dtype() == paddle::DataType::FLOAT32, "fused_linear: ", name, " must be float32, got ",
           phi::DataTypeToString(t.dtype()));
  PD_CHECK(t.is_contiguous(), "fused_linear: ", name, " must be contiguous (call .contiguous() on strided views)");
}

void check_inputs(const Tensor& x, const Tensor& weight, const Tensor* bias, const Tensor* residual) {
  check_tensor(x, "X");
  check_tensor(weight, "Weight");
  PD_CHECK(weight.shape().size() == 2, "fused_linear: Weight must be [in_features, out_features]");
  PD_CHECK(!x.shape().empty() && x.shape().back() == weight.shape()[0], "fused_linear: the last dimension of X (",
           x.shape().empty() ? 0 : x.shape().back(), ") must equal Weight's first (", weight.shape()[0], ")");
  const int64_t n = weight.shape()[1];
  if (bias) {
    check_tensor(*bias, "Bias");
    PD_CHECK(bias->shape().size() == 1 && bias->shape()[0] == n, "fused_linear: Bias must have shape [", n, "]");
  }
  if (residual) {
    check_tensor(*residual, "Residual");
    auto want = x.shape();
    want.back() = n;
    PD_CHECK(residual->shape() == want, "fused_linear: Residual must have the output's shape");
  }
}

std::vector<Tensor> forward(const Tensor& x, const Tensor& weight, const Tensor* bias, const Tensor* residual) {
  check_inputs(x, weight, bias, residual);
  return {paddlemix_eva::linear_forward_cpu(x, weight, bias, residual)};
}

std::vector<Tensor> backward(const Tensor& x, const Tensor& weight, const Tensor& dy, bool has_bias,
                             bool has_residual, bool need_dx, bool need_dweight, bool need_dbias) {
  PD_CHECK(dy.dtype() == paddle::DataType::FLOAT32 && dy.is_cpu(), "fused_linear_grad: dOut must be float32 on CPU");
  const Tensor dense = dy.is_contiguous() ? dy : dy.contiguous();
  return paddlemix_eva::linear_backward_cpu(x, weight, dense, has_bias, has_residual, need_dx, need_dweight,
                                            need_dbias);
}

// Kernel entry points, one pair per op
std::vector<Tensor> Linear(const Tensor& x, const Tensor& w, bool, bool, bool) {
  return forward(x, w, nullptr, nullptr);
}
std::vector<Tensor> LinearGrad(const Tensor& x, const Tensor& w, const Tensor& dy, bool dx, bool dw, bool db) {
  return backward(x, w, dy, false, false, dx, dw, db);
}
std::vector<Tensor> LinearBias(const Tensor& x, const Tensor& w, const Tensor& b, bool, bool, bool) {
  return forward(x, w, &b, nullptr);
}
std::vector<Tensor> LinearBiasGrad(const Tensor& x, const Tensor& w, const Tensor& dy, bool dx, bool dw, bool db) {
  return backward(x, w, dy, true, false, dx, dw, db);
}
std::vector<Tensor> LinearResidual(const Tensor& x, const Tensor& w, const Tensor& r, bool, bool, bool) {
  return forward(x, w, nullptr, &r);
}
std::vector<Tensor> LinearResidualGrad(const Tensor& x, const Tensor& w, const Tensor& dy, bool dx, bool dw,
                                       bool db) {
  return backward(x, w, dy, false, true, dx, dw, db);
}
std::vector<Tensor> LinearBiasResidual(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& r, bool,
                                       bool, bool) {
  return forward(x, w, &b, &r);
}
std::vector<Tensor> LinearBiasResidualGrad(const Tensor& x, const Tensor& w, const Tensor& dy, bool dx, bool dw,
                                           bool db) {
  return backward(x, w, dy, true, true, dx, dw, db);
}

// Shapes for static-graph tracing (the Python wrapper itself only runs the op eagerly).
std::vector<int64_t> out_shape(std::vector<int64_t> x, const std::vector<int64_t>& w) {
  if (!x.empty() && w.size() == 2) x.back() = w[1];
  return x;
}
std::vector<std::vector<int64_t>> Shape2(const std::vector<int64_t>& x, const std::vector<int64_t>& w) {
  return {out_shape(x, w)};
}
std::vector<std::vector<int64_t>> Shape3(const std::vector<int64_t>& x, const std::vector<int64_t>& w,
                                         const std::vector<int64_t>&) {
  return {out_shape(x, w)};
}
std::vector<std::vector<int64_t>> Shape4(const std::vector<int64_t>& x, const std::vector<int64_t>& w,
                                         const std::vector<int64_t>&, const std::vector<int64_t>&) {
  return {out_shape(x, w)};
}
std::vector<paddle::DataType> Dtype2(const paddle::DataType& x, const paddle::DataType&) { return {x}; }
std::vector<paddle::DataType> Dtype3(const paddle::DataType& x, const paddle::DataType&, const paddle::DataType&) {
  return {x};
}
std::vector<paddle::DataType> Dtype4(const paddle::DataType& x, const paddle::DataType&, const paddle::DataType&,
                                     const paddle::DataType&) {
  return {x};
}

}  // namespace

#define PADDLEMIX_EVA_LINEAR_ATTRS {"need_dx: bool", "need_dweight: bool", "need_dbias: bool"}

PD_BUILD_OP(fused_linear)
    .Inputs({"X", "Weight"})
    .Outputs({"Out"})
    .Attrs(PADDLEMIX_EVA_LINEAR_ATTRS)
    .SetKernelFn(PD_KERNEL(Linear))
    .SetInferShapeFn(PD_INFER_SHAPE(Shape2))
    .SetInferDtypeFn(PD_INFER_DTYPE(Dtype2));

PD_BUILD_GRAD_OP(fused_linear)
    .Inputs({"X", "Weight", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Weight")})
    .Attrs(PADDLEMIX_EVA_LINEAR_ATTRS)
    .SetKernelFn(PD_KERNEL(LinearGrad));

PD_BUILD_OP(fused_linear_bias)
    .Inputs({"X", "Weight", "Bias"})
    .Outputs({"Out"})
    .Attrs(PADDLEMIX_EVA_LINEAR_ATTRS)
    .SetKernelFn(PD_KERNEL(LinearBias))
    .SetInferShapeFn(PD_INFER_SHAPE(Shape3))
    .SetInferDtypeFn(PD_INFER_DTYPE(Dtype3));

PD_BUILD_GRAD_OP(fused_linear_bias)
    .Inputs({"X", "Weight", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Weight"), paddle::Grad("Bias")})
    .Attrs(PADDLEMIX_EVA_LINEAR_ATTRS)
    .SetKernelFn(PD_KERNEL(LinearBiasGrad));

PD_BUILD_OP(fused_linear_residual)
    .Inputs({"X", "Weight", "Residual"})
    .Outputs({"Out"})
    .Attrs(PADDLEMIX_EVA_LINEAR_ATTRS)
    .SetKernelFn(PD_KERNEL(LinearResidual))
    .SetInferShapeFn(PD_INFER_SHAPE(Shape3))
    .SetInferDtypeFn(PD_INFER_DTYPE(Dtype3));

PD_BUILD_GRAD_OP(fused_linear_residual)
    .Inputs({"X", "Weight", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Weight"), paddle::Grad("Residual")})
    .Attrs(PADDLEMIX_EVA_LINEAR_ATTRS)
    .SetKernelFn(PD_KERNEL(LinearResidualGrad));

PD_BUILD_OP(fused_linear_bias_residual)
    .Inputs({"X", "Weight", "Bias", "Residual"})
    .Outputs({"Out"})
    .Attrs(PADDLEMIX_EVA_LINEAR_ATTRS)
    .SetKernelFn(PD_KERNEL(LinearBiasResidual))
    .SetInferShapeFn(PD_INFER_SHAPE(Shape4))
    .SetInferDtypeFn(PD_INFER_DTYPE(Dtype4));

PD_BUILD_GRAD_OP(fused_linear_bias_residual)
    .Inputs({"X", "Weight", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Weight"), paddle::Grad("Bias"), paddle::Grad("Residual")})
    .Attrs(PADDLEMIX_EVA_LINEAR_ATTRS)
    .SetKernelFn(PD_KERNEL(LinearBiasResidualGrad));
