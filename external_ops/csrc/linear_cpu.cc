// CPU kernels of fused_linear: the three GEMMs go to oneDNN (onednn_matmul.h), the bias gradient is a column
// sum here. Leading dimensions of x / residual / dy are flattened to M rows.
//
//   forward   out = x @ W (+ bias: matmul bias argument) (+ residual: binary-add post-op, read in the epilogue)
//   backward  dx = dy @ W^T (W read transposed in place), dW = x^T @ dy (x read transposed), dbias = sum_rows dy,
//             dresidual = dy (the same buffer: the residual's gradient is the output's)
#include <omp.h>

#include <algorithm>
#include <vector>

#include "cpu_simd.h"
#include "fused_cpu_ops.h"
#include "onednn_matmul.h"

namespace paddlemix_eva {
namespace {

std::vector<int64_t> with_last_dim(std::vector<int64_t> shape, int64_t last) {
  shape.back() = last;
  return shape;
}

// Product of all but the last dimension: the GEMM's M.
int64_t leading_rows(const std::vector<int64_t>& shape) {
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
  return rows;
}

paddle::Tensor nothing(const paddle::Tensor& like) { return paddle::empty({0}, like.dtype(), like.place()); }

void run_gemm(const GemmSpec& spec, const float* a, const float* b, const float* bias, const float* residual,
              float* c) {
  const std::string error = onednn_gemm(spec, a, b, bias, residual, c);
  PD_CHECK(error.empty(), "fused_linear: oneDNN GEMM [", spec.m, ", ", spec.k, "] x [", spec.k, ", ", spec.n,
           "] failed: ", error);
}

// out[r, :] = (bias or 0) + (residual[r, :] or 0): the whole result when K == 0.
void fill_without_product(const float* bias, const float* residual, float* out, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float* o = out + r * cols;
    const float* res = residual ? residual + r * cols : nullptr;
    for (int64_t j = 0; j < cols; ++j) o[j] = (bias ? bias[j] : 0.0f) + (res ? res[j] : 0.0f);
  }
}

// acc[j - c0] = sum over rows of dy[r, j] for columns [c0, c1), accumulated in double in row order.
PADDLEMIX_EVA_SIMD_CLONES
void column_sums(const float* dy, int64_t rows, int64_t cols, int64_t c0, int64_t c1, double* acc) {
  const int64_t width = c1 - c0;
  for (int64_t j = 0; j < width; ++j) acc[j] = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = dy + r * cols + c0;
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) acc[j] += static_cast<double>(row[j]);
  }
}

// Columns split over the threads in blocks of whole cache lines: no cross-thread reduction, so the sums do not
// depend on the thread count.
void bias_gradient(const float* dy, int64_t rows, int64_t cols, float* dbias) {
  const int64_t threads = std::max<int64_t>(1, omp_get_max_threads());
  const int64_t block = std::max<int64_t>(16, ((cols + threads - 1) / threads + 15) / 16 * 16);
  const int64_t blocks = (cols + block - 1) / block;
#pragma omp parallel for schedule(static) num_threads(static_cast<int>(std::min(threads, blocks)))
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t c0 = b * block, c1 = std::min(cols, c0 + block);
    std::vector<double> acc(c1 - c0);
    column_sums(dy, rows, cols, c0, c1, acc.data());
    for (int64_t j = c0; j < c1; ++j) dbias[j] = static_cast<float>(acc[j - c0]);
  }
}

}  // namespace

paddle::Tensor linear_forward_cpu(const paddle::Tensor& x, const paddle::Tensor& weight, const paddle::Tensor* bias,
                                  const paddle::Tensor* residual) {
  const int64_t k = weight.shape()[0], n = weight.shape()[1];
  const int64_t m = leading_rows(x.shape());
  auto out = paddle::empty(with_last_dim(x.shape(), n), x.dtype(), x.place());
  if (m == 0 || n == 0) return out;
  const float* b = bias ? bias->data<float>() : nullptr;
  const float* r = residual ? residual->data<float>() : nullptr;
  if (k == 0) {
    fill_without_product(b, r, out.data<float>(), m, n);
    return out;
  }
  GemmSpec spec;
  spec.m = m;
  spec.k = k;
  spec.n = n;
  spec.bias = b != nullptr;
  spec.residual = r != nullptr;
  run_gemm(spec, x.data<float>(), weight.data<float>(), b, r, out.data<float>());
  return out;
}

std::vector<paddle::Tensor> linear_backward_cpu(const paddle::Tensor& x, const paddle::Tensor& weight,
                                                const paddle::Tensor& dy, bool has_bias, bool has_residual,
                                                bool need_dx, bool need_dweight, bool need_dbias) {
  const int64_t k = weight.shape()[0], n = weight.shape()[1];
  const int64_t m = leading_rows(x.shape());
  std::vector<paddle::Tensor> grads;
  if (need_dx) {
    auto dx = paddle::empty(x.shape(), x.dtype(), x.place());
    if (m > 0 && k > 0) {
      if (n == 0) {
        std::fill_n(dx.data<float>(), dx.numel(), 0.0f);
      } else {
        GemmSpec spec;  // [M, N] x W^T [N, K]: W is stored as [K, N] = (W^T)^T
        spec.m = m;
        spec.k = n;
        spec.n = k;
        spec.b_transposed = true;
        run_gemm(spec, dy.data<float>(), weight.data<float>(), nullptr, nullptr, dx.data<float>());
      }
    }
    grads.push_back(dx);
  } else {
    grads.push_back(nothing(x));
  }
  if (need_dweight) {
    auto dw = paddle::empty(weight.shape(), weight.dtype(), weight.place());
    if (k > 0 && n > 0) {
      if (m == 0) {
        std::fill_n(dw.data<float>(), dw.numel(), 0.0f);
      } else {
        GemmSpec spec;  // x^T [K, M] x dy [M, N]: x is stored as [M, K] = (x^T)^T
        spec.m = k;
        spec.k = m;
        spec.n = n;
        spec.a_transposed = true;
        run_gemm(spec, x.data<float>(), dy.data<float>(), nullptr, nullptr, dw.data<float>());
      }
    }
    grads.push_back(dw);
  } else {
    grads.push_back(nothing(weight));
  }
  if (has_bias) {
    if (need_dbias) {
      auto db = paddle::empty({n}, weight.dtype(), weight.place());
      if (n > 0) bias_gradient(dy.data<float>(), m, n, db.data<float>());
      grads.push_back(db);
    } else {
      grads.push_back(nothing(weight));
    }
  }
  if (has_residual) grads.push_back(dy);
  return grads;
}

}  // namespace paddlemix_eva
