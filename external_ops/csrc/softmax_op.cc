// fused_softmax: softmax over the last axis, float32 on CPU (the attention probabilities of the matmul path).
//
// Paddle's CPU softmax runs about 0.5 GB/s on [B, H, N, N] attention scores (3.4 ms for EVA-02 Ti at 224, batch 8,
// per block: a tenth of a training step). Here rows go over OpenMP threads and each row takes three SIMD passes:
// max, exp and sum, scale. Backward from the output y: dx = y * (dy - sum(dy * y)).
// Unlike the other elementwise kernels these reduce across SIMD lanes (max, sums), so the AVX-512 and AVX2
// clones may differ in the last bits of a row's sum (float32 rounding; the tests' tolerances allow for it).
#include "cpu_simd.h"
#include "fused_cpu_ops.h"

namespace paddlemix_eva {
namespace {

PADDLEMIX_EVA_SIMD_CLONES
void softmax_row(const float* x, float* y, int64_t n) {
  float peak = x[0];
#pragma omp simd reduction(max : peak)
  for (int64_t j = 0; j < n; ++j) peak = x[j] > peak ? x[j] : peak;
  float total = 0.0f;
#pragma omp simd reduction(+ : total)
  for (int64_t j = 0; j < n; ++j) {
    const float e = simd::exp(x[j] - peak);
    y[j] = e;
    total += e;
  }
  const float inv = 1.0f / total;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] *= inv;
}

PADDLEMIX_EVA_SIMD_CLONES
void softmax_row_grad(const float* y, const float* dy, float* dx, int64_t n) {
  float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
  for (int64_t j = 0; j < n; ++j) dot += dy[j] * y[j];
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dx[j] = y[j] * (dy[j] - dot);
}

}  // namespace

paddle::Tensor softmax_forward_cpu(const paddle::Tensor& x) {
  auto y = paddle::empty(x.shape(), x.dtype(), x.place());
  const int64_t width = x.shape().empty() ? 1 : x.shape().back();
  if (width == 0 || x.numel() == 0) return y;
  const int64_t rows = x.numel() / width;
  const float* src = x.data<float>();
  float* dst = y.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) softmax_row(src + r * width, dst + r * width, width);
  return y;
}

paddle::Tensor softmax_backward_cpu(const paddle::Tensor& y, const paddle::Tensor& dy) {
  auto dx = paddle::empty(y.shape(), y.dtype(), y.place());
  const int64_t width = y.shape().empty() ? 1 : y.shape().back();
  if (width == 0 || y.numel() == 0) return dx;
  const int64_t rows = y.numel() / width;
  const float* out = y.data<float>();
  const float* g = dy.data<float>();
  float* dst = dx.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) softmax_row_grad(out + r * width, g + r * width, dst + r * width, width);
  return dx;
}

}  // namespace paddlemix_eva

namespace {

void check_float32_cpu(const paddle::Tensor& t, const char* what) {
  PD_CHECK(t.is_cpu() && t.dtype() == paddle::DataType::FLOAT32, "fused_softmax: ", what,
           " must be a float32 CPU tensor, got ", phi::DataTypeToString(t.dtype()));
}

std::vector<paddle::Tensor> SoftmaxForward(const paddle::Tensor& x) {
  check_float32_cpu(x, "X");
  PD_CHECK(x.is_contiguous(), "fused_softmax: X must be contiguous (call .contiguous() on strided views)");
  return {paddlemix_eva::softmax_forward_cpu(x)};
}

std::vector<paddle::Tensor> SoftmaxBackward(const paddle::Tensor& y, const paddle::Tensor& dy) {
  check_float32_cpu(dy, "dOut");
  return {paddlemix_eva::softmax_backward_cpu(y, dy.is_contiguous() ? dy : dy.contiguous())};
}

std::vector<std::vector<int64_t>> SoftmaxShape(const std::vector<int64_t>& x) { return {x}; }
std::vector<paddle::DataType> SoftmaxDtype(const paddle::DataType& x) { return {x}; }

}  // namespace

PD_BUILD_OP(fused_softmax)
    .Inputs({"X"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(SoftmaxForward))
    .SetInferShapeFn(PD_INFER_SHAPE(SoftmaxShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(SoftmaxDtype));

PD_BUILD_GRAD_OP(fused_softmax)
    .Inputs({"Out", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .SetKernelFn(PD_KERNEL(SoftmaxBackward));
