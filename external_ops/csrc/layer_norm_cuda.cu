// CUDA kernels of fused_layer_norm (compiled only when Paddle is built with CUDA). Plain CUDA without Paddle's
// headers: `layer_norm_cuda_op.cc` hands over raw pointers and the stream, so this file compiles (and is
// compile-checked in CI) with nothing but the CUDA toolkit.
//
// Forward: one block per row; each thread runs Welford over a strided slice of the row, the partial statistics
// are merged with warp shuffles and then across warps through shared memory. Backward: one block per row for
// dx (two block-wide sums), and a two-stage column reduction for dscale / dbias (per row-chunk partial sums in
// float32, then one pass over the chunks), so no atomics and a deterministic result.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "layer_norm_cuda.h"

namespace paddlemix_eva {
namespace {

constexpr int kWarp = 32;
constexpr int kMaxThreads = 256;
constexpr int kColsPerBlock = 32;
constexpr int kRowsPerThreadY = 8;
constexpr int64_t kRowChunk = 256;
constexpr int64_t kMaxGridY = 65535;
constexpr int64_t kMaxGridX = 2147483647;

template <typename T>
using acc_t = typename std::conditional<std::is_same<T, double>::value, double, float>::type;

// Conversions between storage and accumulation types (float16 / bfloat16 through their intrinsics).
template <typename A, typename T>
__device__ __forceinline__ A load(T v) {
  return static_cast<A>(v);
}
template <>
__device__ __forceinline__ float load<float, __half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float load<float, __nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <typename T, typename A>
__device__ __forceinline__ T store(A v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __half store<__half, float>(float v) {
  return __float2half(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 store<__nv_bfloat16, float>(float v) {
  return __float2bfloat16(v);
}

template <typename A>
struct Welford {
  A mean;
  A m2;
  A count;
};

template <typename A>
__device__ __forceinline__ Welford<A> welford_merge(Welford<A> a, Welford<A> b) {
  const A count = a.count + b.count;
  if (count == A(0)) return a;
  const A delta = b.mean - a.mean;
  const A ratio = b.count / count;
  Welford<A> out;
  out.mean = a.mean + delta * ratio;
  out.m2 = a.m2 + b.m2 + delta * delta * a.count * ratio;
  out.count = count;
  return out;
}

template <typename A>
__device__ __forceinline__ Welford<A> warp_welford(Welford<A> v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    Welford<A> other;
    other.mean = __shfl_down_sync(0xffffffffu, v.mean, offset);
    other.m2 = __shfl_down_sync(0xffffffffu, v.m2, offset);
    other.count = __shfl_down_sync(0xffffffffu, v.count, offset);
    v = welford_merge(v, other);
  }
  return v;
}

// Block-wide Welford; every thread gets the row's statistics.
template <typename A>
__device__ Welford<A> block_welford(Welford<A> v) {
  __shared__ A shared_mean[kMaxThreads / kWarp];
  __shared__ A shared_m2[kMaxThreads / kWarp];
  __shared__ A shared_count[kMaxThreads / kWarp];
  __shared__ Welford<A> result;
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  v = warp_welford(v);
  if (lane == 0) {
    shared_mean[warp] = v.mean;
    shared_m2[warp] = v.m2;
    shared_count[warp] = v.count;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = (blockDim.x + kWarp - 1) / kWarp;
    Welford<A> w{A(0), A(0), A(0)};
    if (lane < warps) w = Welford<A>{shared_mean[lane], shared_m2[lane], shared_count[lane]};
    w = warp_welford(w);
    if (lane == 0) result = w;
  }
  __syncthreads();
  return result;
}

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Block-wide sums of two values; every thread gets both.
template <typename A>
__device__ void block_sum2(A* a, A* b) {
  __shared__ A shared_a[kMaxThreads / kWarp];
  __shared__ A shared_b[kMaxThreads / kWarp];
  __shared__ A total_a, total_b;
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  A va = warp_sum(*a), vb = warp_sum(*b);
  if (lane == 0) {
    shared_a[warp] = va;
    shared_b[warp] = vb;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = (blockDim.x + kWarp - 1) / kWarp;
    va = lane < warps ? shared_a[lane] : A(0);
    vb = lane < warps ? shared_b[lane] : A(0);
    va = warp_sum(va);
    vb = warp_sum(vb);
    if (lane == 0) {
      total_a = va;
      total_b = vb;
    }
  }
  __syncthreads();
  *a = total_a;
  *b = total_b;
}

template <typename T, typename W>
__global__ void forward_kernel(const T* __restrict__ x, const W* __restrict__ scale, const W* __restrict__ bias,
                               T* __restrict__ y, float* __restrict__ mean, float* __restrict__ inv_std,
                               int64_t hidden, float epsilon) {
  using A = acc_t<T>;
  const int64_t row = blockIdx.x;
  const T* xr = x + row * hidden;
  Welford<A> local{A(0), A(0), A(0)};
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    const A v = load<A>(xr[i]);
    local.count += A(1);
    const A delta = v - local.mean;
    local.mean += delta / local.count;
    local.m2 += delta * (v - local.mean);
  }
  const Welford<A> stats = block_welford(local);
  const A mu = stats.mean;
  const A rstd = A(1) / sqrt(stats.m2 / static_cast<A>(hidden) + static_cast<A>(epsilon));
  T* yr = y + row * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    yr[i] = store<T>((load<A>(xr[i]) - mu) * rstd * load<A>(scale[i]) + load<A>(bias[i]));
  }
  if (threadIdx.x == 0) {
    mean[row] = static_cast<float>(mu);
    inv_std[row] = static_cast<float>(rstd);
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * scale.
template <typename T, typename W>
__global__ void backward_input_kernel(const T* __restrict__ x, const W* __restrict__ scale,
                                      const float* __restrict__ mean, const float* __restrict__ inv_std,
                                      const T* __restrict__ dy, T* __restrict__ dx, int64_t hidden) {
  using A = acc_t<T>;
  const int64_t row = blockIdx.x;
  const T* xr = x + row * hidden;
  const T* gr = dy + row * hidden;
  const A mu = static_cast<A>(mean[row]);
  const A rstd = static_cast<A>(inv_std[row]);
  A sum_g = 0, sum_gx = 0;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    const A g = load<A>(gr[i]) * load<A>(scale[i]);
    sum_g += g;
    sum_gx += g * (load<A>(xr[i]) - mu) * rstd;
  }
  block_sum2(&sum_g, &sum_gx);
  const A c1 = sum_g / static_cast<A>(hidden);
  const A c2 = sum_gx / static_cast<A>(hidden);
  T* dxr = dx + row * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    const A xhat = (load<A>(xr[i]) - mu) * rstd;
    const A g = load<A>(gr[i]) * load<A>(scale[i]);
    dxr[i] = store<T>(rstd * (g - c1 - xhat * c2));
  }
}

// Stage 1: block (c, k) sums dy * xhat and dy over rows [k * row_chunk, (k + 1) * row_chunk) for 32 columns;
// threads (tx, ty) stride the rows by blockDim.y and are merged through shared memory.
template <typename T>
__global__ void backward_params_partial_kernel(const T* __restrict__ x, const float* __restrict__ mean,
                                               const float* __restrict__ inv_std, const T* __restrict__ dy,
                                               float* __restrict__ partial, int64_t rows, int64_t hidden,
                                               int64_t row_chunk) {
  using A = acc_t<T>;
  __shared__ A shared_w[kRowsPerThreadY][kColsPerBlock + 1];
  __shared__ A shared_b[kRowsPerThreadY][kColsPerBlock + 1];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kColsPerBlock + threadIdx.x;
  const int64_t row_begin = static_cast<int64_t>(blockIdx.y) * row_chunk;
  const int64_t row_end = row_begin + row_chunk < rows ? row_begin + row_chunk : rows;
  A sw = 0, sb = 0;
  if (col < hidden) {
    for (int64_t r = row_begin + threadIdx.y; r < row_end; r += blockDim.y) {
      const A g = load<A>(dy[r * hidden + col]);
      sw += g * (load<A>(x[r * hidden + col]) - static_cast<A>(mean[r])) * static_cast<A>(inv_std[r]);
      sb += g;
    }
  }
  shared_w[threadIdx.y][threadIdx.x] = sw;
  shared_b[threadIdx.y][threadIdx.x] = sb;
  __syncthreads();
  if (threadIdx.y == 0 && col < hidden) {
    for (unsigned int k = 1; k < blockDim.y; ++k) {
      sw += shared_w[k][threadIdx.x];
      sb += shared_b[k][threadIdx.x];
    }
    float* out = partial + static_cast<int64_t>(blockIdx.y) * 2 * hidden;
    out[col] = static_cast<float>(sw);
    out[hidden + col] = static_cast<float>(sb);
  }
}

// Stage 2: dscale[c], dbias[c] = sums of the chunks' partials, in chunk order.
template <typename W>
__global__ void backward_params_final_kernel(const float* __restrict__ partial, W* __restrict__ dscale,
                                             W* __restrict__ dbias, int64_t chunks, int64_t hidden) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= hidden) return;
  float sw = 0.f, sb = 0.f;
  for (int64_t k = 0; k < chunks; ++k) {
    sw += partial[k * 2 * hidden + col];
    sb += partial[k * 2 * hidden + hidden + col];
  }
  dscale[col] = store<W>(sw);
  dbias[col] = store<W>(sb);
}

int threads_for(int64_t hidden) {
  int threads = kWarp;
  while (threads < kMaxThreads && threads < hidden) threads *= 2;
  return threads;
}

// Calls fn(T*, W*) typed for the storage dtypes of X and of the scale (X's own or float32).
template <typename Fn>
void dispatch(LnDtype x_dtype, LnDtype w_dtype, Fn&& fn) {
  const bool w32 = w_dtype == LnDtype::kFloat32;
  switch (x_dtype) {
    case LnDtype::kFloat32:
      fn(static_cast<float*>(nullptr), static_cast<float*>(nullptr));
      return;
    case LnDtype::kFloat64:
      if (w32) fn(static_cast<double*>(nullptr), static_cast<float*>(nullptr));
      else fn(static_cast<double*>(nullptr), static_cast<double*>(nullptr));
      return;
    case LnDtype::kFloat16:
      if (w32) fn(static_cast<__half*>(nullptr), static_cast<float*>(nullptr));
      else fn(static_cast<__half*>(nullptr), static_cast<__half*>(nullptr));
      return;
    case LnDtype::kBFloat16:
      if (w32) fn(static_cast<__nv_bfloat16*>(nullptr), static_cast<float*>(nullptr));
      else fn(static_cast<__nv_bfloat16*>(nullptr), static_cast<__nv_bfloat16*>(nullptr));
      return;
  }
}

// Rows per stage-1 block: kRowChunk, or more when the chunks would exceed the grid's y limit.
int64_t row_chunk_for(int64_t rows) {
  const int64_t min_chunk = (rows + kMaxGridY - 1) / kMaxGridY;
  return min_chunk > kRowChunk ? min_chunk : kRowChunk;
}

int64_t chunks_for(int64_t rows) {
  const int64_t chunk = row_chunk_for(rows);
  return rows > 0 ? (rows + chunk - 1) / chunk : 1;
}

}  // namespace

int64_t layer_norm_backward_workspace_floats(int64_t rows, int64_t hidden) { return chunks_for(rows) * 2 * hidden; }

cudaError_t launch_layer_norm_forward(LnDtype x_dtype, LnDtype w_dtype, const void* x, const void* scale,
                                      const void* bias, void* y, float* mean, float* inv_std, int64_t rows,
                                      int64_t hidden, float epsilon, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (rows > kMaxGridX) return cudaErrorInvalidConfiguration;  // one block per row
  dispatch(x_dtype, w_dtype, [&](auto* t_tag, auto* w_tag) {
    using T = std::remove_pointer_t<decltype(t_tag)>;
    using W = std::remove_pointer_t<decltype(w_tag)>;
    forward_kernel<T, W><<<static_cast<unsigned int>(rows), threads_for(hidden), 0, stream>>>(
        static_cast<const T*>(x), static_cast<const W*>(scale), static_cast<const W*>(bias), static_cast<T*>(y),
        mean, inv_std, hidden, epsilon);
  });
  return cudaGetLastError();
}

cudaError_t launch_layer_norm_backward(LnDtype x_dtype, LnDtype w_dtype, const void* x, const void* scale,
                                       const float* mean, const float* inv_std, const void* dy, void* dx,
                                       void* dscale, void* dbias, float* workspace, int64_t rows, int64_t hidden,
                                       cudaStream_t stream) {
  if (rows > kMaxGridX) return cudaErrorInvalidConfiguration;  // one block per row
  const int64_t chunks = chunks_for(rows);
  const int64_t row_chunk = row_chunk_for(rows);
  if (rows == 0) {
    const cudaError_t err = cudaMemsetAsync(workspace, 0, sizeof(float) * 2 * hidden, stream);
    if (err != cudaSuccess) return err;
  }
  dispatch(x_dtype, w_dtype, [&](auto* t_tag, auto* w_tag) {
    using T = std::remove_pointer_t<decltype(t_tag)>;
    using W = std::remove_pointer_t<decltype(w_tag)>;
    if (rows > 0) {
      backward_input_kernel<T, W><<<static_cast<unsigned int>(rows), threads_for(hidden), 0, stream>>>(
          static_cast<const T*>(x), static_cast<const W*>(scale), mean, inv_std, static_cast<const T*>(dy),
          static_cast<T*>(dx), hidden);
      const dim3 grid(static_cast<unsigned int>((hidden + kColsPerBlock - 1) / kColsPerBlock),
                      static_cast<unsigned int>(chunks));
      const dim3 block(kColsPerBlock, kRowsPerThreadY);
      backward_params_partial_kernel<T><<<grid, block, 0, stream>>>(
          static_cast<const T*>(x), mean, inv_std, static_cast<const T*>(dy), workspace, rows, hidden,
          row_chunk);
    }
    const int threads = kMaxThreads;
    backward_params_final_kernel<W><<<static_cast<unsigned int>((hidden + threads - 1) / threads), threads, 0,
                                      stream>>>(workspace, static_cast<W*>(dscale), static_cast<W*>(dbias), chunks,
                                                hidden);
  });
  return cudaGetLastError();
}

}  // namespace paddlemix_eva
