// float32 GEMMs C = A @ B (+ bias row) (+ R) through oneDNN's matmul primitive, with primitives cached by shape.
//
// Creating a matmul primitive costs far more than running a small one (JIT code generation), so primitives are
// kept in an LRU cache keyed by the full GemmSpec and the OpenMP thread count (oneDNN partitions the work for the
// thread count current at creation; Paddle's set_num_threads changes it); every call only wraps the caller's
// buffers in memory objects.
#pragma once

#include <cstdint>
#include <string>

namespace paddlemix_eva {

struct GemmSpec {
  int64_t m = 0, k = 0, n = 0;
  bool a_transposed = false;  // A is stored as the row-major [k, m] matrix A^T
  bool b_transposed = false;  // B is stored as the row-major [n, k] matrix B^T
  bool bias = false;          // add bias[n] to every row (matmul bias argument)
  bool residual = false;      // add the row-major [m, n] matrix R (binary-add post-op)
  int threads = 0;            // set by onednn_gemm: oneDNN fixes a primitive's thread split when creating it

  bool operator==(const GemmSpec& o) const {
    return m == o.m && k == o.k && n == o.n && a_transposed == o.a_transposed && b_transposed == o.b_transposed &&
           bias == o.bias && residual == o.residual && threads == o.threads;
  }
};

// C (row-major [m, n]) = A @ B (+ bias) (+ R). Returns "" on success, else what oneDNN refused. m, k, n > 0.
std::string onednn_gemm(const GemmSpec& spec, const float* a, const float* b, const float* bias,
                        const float* residual, float* c);

// The name of the implementation oneDNN picked for `spec` (e.g. "brg_matmul:avx512_core"), or the error.
std::string onednn_gemm_implementation(const GemmSpec& spec);

// Number of cached primitives (tests) and the cache bound.
int64_t onednn_gemm_cache_size();
constexpr int64_t kGemmCacheCapacity = 512;

}  // namespace paddlemix_eva
