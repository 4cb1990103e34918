// fused_swiglu: out[..., H] = silu(h[..., :H]) * h[..., H:] (the gate is the first half), float32 on CPU.
//
// One pass each way, rows over OpenMP threads, each row in a SIMD loop with the vectorised exp of cpu_simd.h.
// Backward with s = sigmoid(a): da = dy * b * s * (1 + a * (1 - s)), db = dy * a * s.
#include "cpu_simd.h"
#include "fused_cpu_ops.h"

namespace paddlemix_eva {
namespace {

PADDLEMIX_EVA_SIMD_CLONES
void swiglu_row(const float* a, const float* b, float* out, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) out[j] = a[j] * simd::sigmoid(a[j]) * b[j];
}

PADDLEMIX_EVA_SIMD_CLONES
void swiglu_row_grad(const float* a, const float* b, const float* dy, float* da, float* db, int64_t n) {
// Written as s * (1 + x (1 - s)): the algebraically equal s + silu * (1 - s) made GCC 12 emit a loop 5x slower.
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const float x = a[j], g = dy[j];
    const float s = simd::sigmoid(x);
    da[j] = g * b[j] * (s * (1.0f + x * (1.0f - s)));
    db[j] = g * (x * s);
  }
}

std::vector<int64_t> half_last(std::vector<int64_t> shape) {
  shape.back() /= 2;
  return shape;
}

}  // namespace

paddle::Tensor swiglu_forward_cpu(const paddle::Tensor& h) {
  const int64_t width = h.shape().back() / 2;
  auto out = paddle::empty(half_last(h.shape()), h.dtype(), h.place());
  if (width == 0) return out;
  const int64_t rows = out.numel() / width;
  const float* src = h.data<float>();
  float* dst = out.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) swiglu_row(src + 2 * r * width, src + (2 * r + 1) * width, dst + r * width, width);
  return out;
}

paddle::Tensor swiglu_backward_cpu(const paddle::Tensor& h, const paddle::Tensor& dy) {
  const int64_t width = h.shape().back() / 2;
  auto dh = paddle::empty(h.shape(), h.dtype(), h.place());
  if (width == 0) return dh;
  const int64_t rows = dy.numel() / width;
  const float* src = h.data<float>();
  const float* g = dy.data<float>();
  float* dst = dh.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    swiglu_row_grad(src + 2 * r * width, src + (2 * r + 1) * width, g + r * width, dst + 2 * r * width,
                    dst + (2 * r + 1) * width, width);
  }
  return dh;
}

}  // namespace paddlemix_eva

namespace {

void check_h(const paddle::Tensor& h) {
  PD_CHECK(h.is_cpu() && h.dtype() == paddle::DataType::FLOAT32, "fused_swiglu: H must be a float32 CPU tensor, got ",
           phi::DataTypeToString(h.dtype()));
  PD_CHECK(h.is_contiguous(), "fused_swiglu: H must be contiguous (call .contiguous() on strided views)");
  PD_CHECK(!h.shape().empty() && h.shape().back() % 2 == 0, "fused_swiglu: the last dimension of H must be even");
}

std::vector<paddle::Tensor> SwigluForward(const paddle::Tensor& h) {
  check_h(h);
  return {paddlemix_eva::swiglu_forward_cpu(h)};
}

std::vector<paddle::Tensor> SwigluBackward(const paddle::Tensor& h, const paddle::Tensor& dy) {
  PD_CHECK(dy.dtype() == paddle::DataType::FLOAT32 && dy.is_cpu(), "fused_swiglu_grad: dOut must be float32 on CPU");
  return {paddlemix_eva::swiglu_backward_cpu(h, dy.is_contiguous() ? dy : dy.contiguous())};
}

std::vector<std::vector<int64_t>> SwigluShape(const std::vector<int64_t>& h) {
  auto out = h;
  if (!out.empty() && out.back() > 0) out.back() /= 2;
  return {out};
}

std::vector<paddle::DataType> SwigluDtype(const paddle::DataType& h) { return {h}; }

}  // namespace

PD_BUILD_OP(fused_swiglu)
    .Inputs({"H"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(SwigluForward))
    .SetInferShapeFn(PD_INFER_SHAPE(SwigluShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(SwigluDtype));

PD_BUILD_GRAD_OP(fused_swiglu)
    .Inputs({"H", paddle::Grad("Out")})
    .Outputs({paddle::Grad("H")})
    .SetKernelFn(PD_KERNEL(SwigluBackward));
