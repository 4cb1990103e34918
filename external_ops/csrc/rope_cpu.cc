// CPU kernels of the RoPE ops on packed qkv [B, N, 3, heads, d] with tables cos / sin [N, d].
//
// EVA-02's interleaved pairs, per head row x of d values and table row (c, s) of its token:
//   forward    y[2i] = x[2i] c[2i] - x[2i+1] s[2i],     y[2i+1] = x[2i+1] c[2i+1] + x[2i] s[2i+1]
//   transpose  dx[2i] = dy[2i] c[2i] + dy[2i+1] s[2i+1], dx[2i+1] = dy[2i+1] c[2i+1] - dy[2i] s[2i]
// The q and k slots are rotated, v is copied. Tokens (B * N rows of 3 * heads * d values) go over the OpenMP
// threads; the split variant writes each head row to its place in a [B, heads, N, d] tensor instead, which is
// the transpose the matmul attention needs, done in the same pass.
#include <cstring>

#include "cpu_simd.h"
#include "fused_cpu_ops.h"

namespace paddlemix_eva {
namespace {

// `heads` rows of d values, x rows `x_stride` apart, y rows `y_stride` apart; all results times `scale`.
PADDLEMIX_EVA_SIMD_CLONES
void rotate_heads(const float* x, int64_t x_stride, float* y, int64_t y_stride, const float* c, const float* s,
                  int64_t heads, int64_t d, float scale) {
  const int64_t pairs = d / 2;
  for (int64_t h = 0; h < heads; ++h) {
    const float* xr = x + h * x_stride;
    float* yr = y + h * y_stride;
#pragma omp simd
    for (int64_t i = 0; i < pairs; ++i) {
      const float x0 = xr[2 * i], x1 = xr[2 * i + 1];
      yr[2 * i] = (x0 * c[2 * i] - x1 * s[2 * i]) * scale;
      yr[2 * i + 1] = (x1 * c[2 * i + 1] + x0 * s[2 * i + 1]) * scale;
    }
  }
}

PADDLEMIX_EVA_SIMD_CLONES
void rotate_heads_back(const float* dy, int64_t dy_stride, float* dx, int64_t dx_stride, const float* c,
                       const float* s, int64_t heads, int64_t d, float scale) {
  const int64_t pairs = d / 2;
  for (int64_t h = 0; h < heads; ++h) {
    const float* g = dy + h * dy_stride;
    float* o = dx + h * dx_stride;
#pragma omp simd
    for (int64_t i = 0; i < pairs; ++i) {
      const float g0 = g[2 * i], g1 = g[2 * i + 1];
      o[2 * i] = (g0 * c[2 * i] + g1 * s[2 * i + 1]) * scale;
      o[2 * i + 1] = (g1 * c[2 * i + 1] - g0 * s[2 * i]) * scale;
    }
  }
}

void copy_heads(const float* x, int64_t x_stride, float* y, int64_t y_stride, int64_t heads, int64_t d) {
  for (int64_t h = 0; h < heads; ++h) std::memcpy(y + h * y_stride, x + h * x_stride, sizeof(float) * d);
}

void zero_heads(float* y, int64_t y_stride, int64_t heads, int64_t d) {
  for (int64_t h = 0; h < heads; ++h) std::memset(y + h * y_stride, 0, sizeof(float) * d);
}

struct Dims {
  int64_t batch, tokens, heads, dim;
  explicit Dims(const std::vector<int64_t>& qkv) : batch(qkv[0]), tokens(qkv[1]), heads(qkv[3]), dim(qkv[4]) {}
  int64_t rows() const { return batch * tokens; }
  int64_t slot() const { return heads * dim; }       // values of one of q / k / v in a packed row
  int64_t packed_row() const { return 3 * slot(); }  // values of one token in qkv
  // offset of head 0 of token (b, n) in a [B, heads, N, d] tensor; its heads are tokens * dim apart
  int64_t split_offset(int64_t row) const {
    return (row / tokens) * heads * tokens * dim + (row % tokens) * dim;
  }
};

}  // namespace

paddle::Tensor rope_qkv_forward_cpu(const paddle::Tensor& qkv, const paddle::Tensor& cos, const paddle::Tensor& sin) {
  const Dims dims(qkv.shape());
  auto out = paddle::empty(qkv.shape(), qkv.dtype(), qkv.place());
  const float *x = qkv.data<float>(), *c = cos.data<float>(), *s = sin.data<float>();
  float* y = out.data<float>();
  const int64_t d = dims.dim, slot = dims.slot();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < dims.rows(); ++row) {
    const int64_t base = row * dims.packed_row(), table = (row % dims.tokens) * d;
    rotate_heads(x + base, d, y + base, d, c + table, s + table, 2 * dims.heads, d, 1.0f);  // q and k: 2H rows
    std::memcpy(y + base + 2 * slot, x + base + 2 * slot, sizeof(float) * slot);
  }
  return out;
}

paddle::Tensor rope_qkv_backward_cpu(const paddle::Tensor& dy, const paddle::Tensor& cos, const paddle::Tensor& sin) {
  const Dims dims(dy.shape());
  auto dx = paddle::empty(dy.shape(), dy.dtype(), dy.place());
  const float *g = dy.data<float>(), *c = cos.data<float>(), *s = sin.data<float>();
  float* o = dx.data<float>();
  const int64_t d = dims.dim, slot = dims.slot();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < dims.rows(); ++row) {
    const int64_t base = row * dims.packed_row(), table = (row % dims.tokens) * d;
    rotate_heads_back(g + base, d, o + base, d, c + table, s + table, 2 * dims.heads, d, 1.0f);
    std::memcpy(o + base + 2 * slot, g + base + 2 * slot, sizeof(float) * slot);
  }
  return dx;
}

std::vector<paddle::Tensor> rope_qkv_split_forward_cpu(const paddle::Tensor& qkv, const paddle::Tensor& cos,
                                                       const paddle::Tensor& sin, float q_scale) {
  const Dims dims(qkv.shape());
  const std::vector<int64_t> shape = {dims.batch, dims.heads, dims.tokens, dims.dim};
  auto q = paddle::empty(shape, qkv.dtype(), qkv.place());
  auto k = paddle::empty(shape, qkv.dtype(), qkv.place());
  auto v = paddle::empty(shape, qkv.dtype(), qkv.place());
  const float *x = qkv.data<float>(), *c = cos.data<float>(), *s = sin.data<float>();
  float *qo = q.data<float>(), *ko = k.data<float>(), *vo = v.data<float>();
  const int64_t d = dims.dim, slot = dims.slot(), head_stride = dims.tokens * d;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < dims.rows(); ++row) {
    const int64_t base = row * dims.packed_row(), table = (row % dims.tokens) * d, at = dims.split_offset(row);
    rotate_heads(x + base, d, qo + at, head_stride, c + table, s + table, dims.heads, d, q_scale);
    rotate_heads(x + base + slot, d, ko + at, head_stride, c + table, s + table, dims.heads, d, 1.0f);
    copy_heads(x + base + 2 * slot, d, vo + at, head_stride, dims.heads, d);
  }
  return {q, k, v};
}

paddle::Tensor rope_qkv_split_backward_cpu(const paddle::Tensor& dq, const paddle::Tensor& dk,
                                           const paddle::Tensor& dv, const paddle::Tensor& cos,
                                           const paddle::Tensor& sin, float q_scale) {
  // dq / dk / dv are [B, heads, N, d]; an output that got no gradient arrives uninitialised and counts as zero
  const auto& shape = dq.initialized() ? dq.shape() : dk.initialized() ? dk.shape() : dv.shape();
  const Dims dims({shape[0], shape[2], 3, shape[1], shape[3]});
  const paddle::Tensor& any = dq.initialized() ? dq : dk.initialized() ? dk : dv;
  auto dqkv = paddle::empty({dims.batch, dims.tokens, 3, dims.heads, dims.dim}, any.dtype(), any.place());
  const float* gq = dq.initialized() ? dq.data<float>() : nullptr;
  const float* gk = dk.initialized() ? dk.data<float>() : nullptr;
  const float* gv = dv.initialized() ? dv.data<float>() : nullptr;
  const float *c = cos.data<float>(), *s = sin.data<float>();
  float* o = dqkv.data<float>();
  const int64_t d = dims.dim, slot = dims.slot(), head_stride = dims.tokens * d;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < dims.rows(); ++row) {
    const int64_t base = row * dims.packed_row(), table = (row % dims.tokens) * d, at = dims.split_offset(row);
    if (gq) rotate_heads_back(gq + at, head_stride, o + base, d, c + table, s + table, dims.heads, d, q_scale);
    else zero_heads(o + base, d, dims.heads, d);
    if (gk) rotate_heads_back(gk + at, head_stride, o + base + slot, d, c + table, s + table, dims.heads, d, 1.0f);
    else zero_heads(o + base + slot, d, dims.heads, d);
    if (gv) copy_heads(gv + at, head_stride, o + base + 2 * slot, d, dims.heads, d);
    else zero_heads(o + base + 2 * slot, d, dims.heads, d);
  }
  return dqkv;
}

}  // namespace paddlemix_eva
