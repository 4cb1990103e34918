// CPU kernels of fused_layer_norm: rows in parallel (OpenMP), each row in SIMD loops (`omp simd` reductions).
//
// Statistics are two-pass (mean, then the mean of squared deviations): exact for constant rows and no
// cancellation for rows far from zero. bfloat16 rows are widened to float32 into a per-thread buffer and
// narrowed on store, so every arithmetic loop runs on float32 vectors. float64 (for gradient checks) runs in
// double.
#include <omp.h>

#include <cmath>
#include <type_traits>
#include <vector>

#include "layer_norm.h"

namespace paddlemix_eva {
namespace {

using bf16 = paddle::bfloat16;

template <typename T>
using acc_t = typename std::conditional<std::is_same<T, double>::value, double, float>::type;

// Row kernels on float32, compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time by the CPU
// (GCC function multi-versioning), so one binary runs everywhere and uses the widest vectors available.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PADDLEMIX_EVA_MULTIVERSION __attribute__((target_clones("avx512f", "avx2,fma", "default")))
#else
#define PADDLEMIX_EVA_MULTIVERSION
#endif

template <typename A>
inline void row_forward(const A* x, const A* w, const A* b, A* y, int64_t n, A epsilon, A* mean, A* inv_std) {
  A sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const A mu = sum / static_cast<A>(n);
  A sq = 0;
#pragma omp simd reduction(+ : sq)
  for (int64_t i = 0; i < n; ++i) {
    const A d = x[i] - mu;
    sq += d * d;
  }
  const A rstd = A(1) / std::sqrt(sq / static_cast<A>(n) + epsilon);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mu) * rstd * w[i] + b[i];
  *mean = mu;
  *inv_std = rstd;
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w; accumulates dy * xhat and dy into dw, db.
template <typename A>
inline void row_backward(const A* x, const A* dy, const A* w, A mu, A rstd, A* dx, A* dw, A* db, int64_t n) {
  A sum_g = 0, sum_gx = 0;
#pragma omp simd reduction(+ : sum_g, sum_gx)
  for (int64_t i = 0; i < n; ++i) {
    const A xhat = (x[i] - mu) * rstd;
    const A g = dy[i] * w[i];
    sum_g += g;
    sum_gx += g * xhat;
    dw[i] += dy[i] * xhat;
    db[i] += dy[i];
  }
  const A c1 = sum_g / static_cast<A>(n);
  const A c2 = sum_gx / static_cast<A>(n);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dx[i] = rstd * (dy[i] * w[i] - c1 - (x[i] - mu) * rstd * c2);
}

PADDLEMIX_EVA_MULTIVERSION
void row_forward_f32(const float* x, const float* w, const float* b, float* y, int64_t n, float epsilon,
                     float* mean, float* inv_std) {
  row_forward<float>(x, w, b, y, n, epsilon, mean, inv_std);
}

PADDLEMIX_EVA_MULTIVERSION
void row_backward_f32(const float* x, const float* dy, const float* w, float mu, float rstd, float* dx, float* dw,
                      float* db, int64_t n) {
  row_backward<float>(x, dy, w, mu, rstd, dx, dw, db, n);
}

inline void row_forward_any(const float* x, const float* w, const float* b, float* y, int64_t n, float eps,
                            float* mean, float* inv_std) {
  row_forward_f32(x, w, b, y, n, eps, mean, inv_std);
}
inline void row_forward_any(const double* x, const double* w, const double* b, double* y, int64_t n, double eps,
                            double* mean, double* inv_std) {
  row_forward<double>(x, w, b, y, n, eps, mean, inv_std);
}
inline void row_backward_any(const float* x, const float* dy, const float* w, float mu, float rstd, float* dx,
                             float* dw, float* db, int64_t n) {
  row_backward_f32(x, dy, w, mu, rstd, dx, dw, db, n);
}
inline void row_backward_any(const double* x, const double* dy, const double* w, double mu, double rstd,
                             double* dx, double* dw, double* db, int64_t n) {
  row_backward<double>(x, dy, w, mu, rstd, dx, dw, db, n);
}

// Rows of T as rows of the accumulation type A: the memory itself when T is A, else a per-thread buffer
// (widened on load, narrowed on store).
template <typename T>
struct RowBuffer {
  using A = acc_t<T>;
  static constexpr bool kDirect = std::is_same<T, A>::value;
  std::vector<A> storage;
  explicit RowBuffer(int64_t n) : storage(kDirect ? 0 : n) {}
  const A* load(const T* row, int64_t n) {
    if (kDirect) return reinterpret_cast<const A*>(row);
    for (int64_t i = 0; i < n; ++i) storage[i] = static_cast<A>(row[i]);
    return storage.data();
  }
  A* target(T* row) { return kDirect ? reinterpret_cast<A*>(row) : storage.data(); }
  void store(const A* values, T* row, int64_t n) {
    if (kDirect) return;
    for (int64_t i = 0; i < n; ++i) row[i] = static_cast<T>(values[i]);
  }
};

template <typename T, typename W>
std::vector<acc_t<T>> widened(const W* values, int64_t n) {
  std::vector<acc_t<T>> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<acc_t<T>>(values[i]);
  return out;
}

template <typename T, typename W>
void forward_rows(const T* x, const W* scale, const W* bias, T* y, float* mean, float* inv_std, int64_t rows,
                  int64_t hidden, float epsilon) {
  using A = acc_t<T>;
  const std::vector<A> w = widened<T>(scale, hidden), b = widened<T>(bias, hidden);
#pragma omp parallel
  {
    RowBuffer<T> in(hidden), out(hidden);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      A mu, rstd;
      A* yr = out.target(y + r * hidden);
      row_forward_any(in.load(x + r * hidden, hidden), w.data(), b.data(), yr, hidden, static_cast<A>(epsilon),
                      &mu, &rstd);
      out.store(yr, y + r * hidden, hidden);
      mean[r] = static_cast<float>(mu);
      inv_std[r] = static_cast<float>(rstd);
    }
  }
}

// Each thread sums its rows' dscale / dbias into its own slice; the slices are added in thread order, so the
// result does not depend on scheduling.
template <typename T, typename W>
void backward_rows(const T* x, const W* scale, const float* mean, const float* inv_std, const T* dy, T* dx,
                   W* dscale, W* dbias, int64_t rows, int64_t hidden) {
  using A = acc_t<T>;
  const std::vector<A> w = widened<T>(scale, hidden);
  const int threads = omp_get_max_threads();
  std::vector<A> partial(static_cast<size_t>(threads) * 2 * hidden, A(0));
#pragma omp parallel num_threads(threads)
  {
    RowBuffer<T> xin(hidden), gin(hidden), out(hidden);
    A* dw = partial.data() + static_cast<size_t>(omp_get_thread_num()) * 2 * hidden;
    A* db = dw + hidden;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      A* dxr = out.target(dx + r * hidden);
      row_backward_any(xin.load(x + r * hidden, hidden), gin.load(dy + r * hidden, hidden), w.data(),
                       static_cast<A>(mean[r]), static_cast<A>(inv_std[r]), dxr, dw, db, hidden);
      out.store(dxr, dx + r * hidden, hidden);
    }
  }
  for (int64_t i = 0; i < hidden; ++i) {
    A sw = 0, sb = 0;
    for (int t = 0; t < threads; ++t) {
      sw += partial[static_cast<size_t>(t) * 2 * hidden + i];
      sb += partial[static_cast<size_t>(t) * 2 * hidden + hidden + i];
    }
    dscale[i] = static_cast<W>(sw);
    dbias[i] = static_cast<W>(sb);
  }
}

// Calls fn(T*, W*) typed for X's dtype and the scale's dtype (X's own or float32).
template <typename Fn>
void dispatch(paddle::DataType x_dtype, paddle::DataType w_dtype, Fn&& fn) {
  const bool w32 = w_dtype == paddle::DataType::FLOAT32;
  switch (x_dtype) {
    case paddle::DataType::FLOAT32:
      fn(static_cast<float*>(nullptr), static_cast<float*>(nullptr));
      return;
    case paddle::DataType::FLOAT64:
      if (w32) fn(static_cast<double*>(nullptr), static_cast<float*>(nullptr));
      else fn(static_cast<double*>(nullptr), static_cast<double*>(nullptr));
      return;
    case paddle::DataType::BFLOAT16:
      if (w32) fn(static_cast<bf16*>(nullptr), static_cast<float*>(nullptr));
      else fn(static_cast<bf16*>(nullptr), static_cast<bf16*>(nullptr));
      return;
    default:
      PD_THROW("fused_layer_norm (CPU): X must be float32, float64 or bfloat16, got ",
               phi::DataTypeToString(x_dtype));
  }
}

}  // namespace

std::vector<paddle::Tensor> layer_norm_forward_cpu(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                   const paddle::Tensor& bias, float epsilon, int64_t rows,
                                                   int64_t hidden) {
  auto y = paddle::empty(x.shape(), x.dtype(), x.place());
  auto mean = paddle::empty({rows}, paddle::DataType::FLOAT32, x.place());
  auto inv_std = paddle::empty({rows}, paddle::DataType::FLOAT32, x.place());
  dispatch(x.dtype(), scale.dtype(), [&](auto* t_tag, auto* w_tag) {
    using T = std::remove_pointer_t<decltype(t_tag)>;
    using W = std::remove_pointer_t<decltype(w_tag)>;
    forward_rows<T, W>(x.data<T>(), scale.data<W>(), bias.data<W>(), y.data<T>(), mean.data<float>(),
                       inv_std.data<float>(), rows, hidden, epsilon);
  });
  return {y, mean, inv_std};
}

std::vector<paddle::Tensor> layer_norm_backward_cpu(const paddle::Tensor& x, const paddle::Tensor& scale,
                                                    const paddle::Tensor& mean, const paddle::Tensor& inv_std,
                                                    const paddle::Tensor& dy, int64_t rows, int64_t hidden) {
  auto dx = paddle::empty(x.shape(), x.dtype(), x.place());
  auto dscale = paddle::empty(scale.shape(), scale.dtype(), x.place());
  auto dbias = paddle::empty(scale.shape(), scale.dtype(), x.place());
  dispatch(x.dtype(), scale.dtype(), [&](auto* t_tag, auto* w_tag) {
    using T = std::remove_pointer_t<decltype(t_tag)>;
    using W = std::remove_pointer_t<decltype(w_tag)>;
    backward_rows<T, W>(x.data<T>(), scale.data<W>(), mean.data<float>(), inv_std.data<float>(), dy.data<T>(),
                        dx.data<T>(), dscale.data<W>(), dbias.data<W>(), rows, hidden);
  });
  return {dx, dscale, dbias};
}

}  // namespace paddlemix_eva
