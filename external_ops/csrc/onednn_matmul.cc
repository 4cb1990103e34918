// onednn_gemm: one cached oneDNN matmul primitive per GemmSpec, executed on the caller's buffers.
#include "onednn_matmul.h"

#include <omp.h>

#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "onednn_api.h"

namespace paddlemix_eva {
namespace {

using namespace onednn;  // NOLINT: the oneDNN names read best unqualified here

struct SpecHash {
  size_t operator()(const GemmSpec& s) const {
    size_t h = std::hash<int64_t>()(s.m);
    for (int64_t v : {s.k, s.n, static_cast<int64_t>(s.threads)}) h = h * 1000003u ^ std::hash<int64_t>()(v);
    const unsigned flags = (s.a_transposed ? 1u : 0u) | (s.b_transposed ? 2u : 0u) | (s.bias ? 4u : 0u) |
                           (s.residual ? 8u : 0u);
    return h * 31u ^ flags;
  }
};

// A 2-D float32 memory descriptor [rows, cols] with the given strides.
dnnl_memory_desc_t matrix_desc(const Api& lib, int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  dnnl_dims_t dims = {rows, cols};
  dnnl_dims_t strides = {row_stride, col_stride};
  dnnl_memory_desc_t md = nullptr;
  if (lib.dnnl_memory_desc_create_with_strides(&md, 2, dims, dnnl_f32, strides) != dnnl_success) return nullptr;
  return md;
}

// A created primitive and the descriptors of its arguments; owns all of them.
class Primitive {
 public:
  Primitive(const Api& lib, const GemmSpec& s) : lib_(lib) {
    a_ = s.a_transposed ? matrix_desc(lib, s.m, s.k, 1, s.m) : matrix_desc(lib, s.m, s.k, s.k, 1);
    b_ = s.b_transposed ? matrix_desc(lib, s.k, s.n, 1, s.k) : matrix_desc(lib, s.k, s.n, s.n, 1);
    c_ = matrix_desc(lib, s.m, s.n, s.n, 1);
    if (s.bias) bias_ = matrix_desc(lib, 1, s.n, s.n, 1);
    if (s.residual) residual_ = matrix_desc(lib, s.m, s.n, s.n, 1);
    if (!a_ || !b_ || !c_ || (s.bias && !bias_) || (s.residual && !residual_)) {
      error_ = "cannot create the memory descriptors";
      return;
    }
    dnnl_primitive_attr_t attr = nullptr;
    dnnl_post_ops_t post_ops = nullptr;
    bool ok = lib.dnnl_primitive_attr_create(&attr) == dnnl_success &&
              lib.dnnl_primitive_attr_set_fpmath_mode(attr, dnnl_fpmath_mode_strict) == dnnl_success;
    if (ok && s.residual) {
      ok = lib.dnnl_post_ops_create(&post_ops) == dnnl_success &&
           lib.dnnl_post_ops_append_binary(post_ops, dnnl_binary_add, residual_) == dnnl_success &&
           lib.dnnl_primitive_attr_set_post_ops(attr, post_ops) == dnnl_success;
    }
    dnnl_status_t status = ok ? lib.dnnl_matmul_primitive_desc_create(&pd_, lib.engine, a_, b_, bias_, c_, attr)
                              : dnnl_invalid_arguments;
    if (status == dnnl_success) status = lib.dnnl_primitive_create(&primitive_, pd_);
    if (status != dnnl_success) error_ = "matmul primitive creation failed (dnnl status " + std::to_string(status) + ")";
    if (post_ops) lib.dnnl_post_ops_destroy(post_ops);
    if (attr) lib.dnnl_primitive_attr_destroy(attr);
  }

  ~Primitive() {
    if (primitive_) lib_.dnnl_primitive_destroy(primitive_);
    if (pd_) lib_.dnnl_primitive_desc_destroy(pd_);
    for (dnnl_memory_desc_t md : {a_, b_, c_, bias_, residual_})
      if (md) lib_.dnnl_memory_desc_destroy(md);
  }

  Primitive(const Primitive&) = delete;
  Primitive& operator=(const Primitive&) = delete;

  const std::string& error() const { return error_; }

  std::string implementation() const {
    const char* name = nullptr;
    if (lib_.dnnl_primitive_desc_query(pd_, dnnl_query_impl_info_str, 0, &name) != dnnl_success || !name)
      return "unknown";
    return name;
  }

  std::string run(const float* a, const float* b, const float* bias, const float* residual, float* c) const {
    dnnl_stream_t stream = thread_stream();
    if (stream == nullptr) return "cannot create a oneDNN stream";
    struct Arg {
      int index;
      const_dnnl_memory_desc_t md;
      const void* data;
    };
    const Arg wanted[] = {{DNNL_ARG_SRC, a_, a},
                          {DNNL_ARG_WEIGHTS, b_, b},
                          {DNNL_ARG_DST, c_, c},
                          {DNNL_ARG_BIAS, bias_, bias},
                          {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, residual_, residual}};
    dnnl_exec_arg_t args[5];
    int nargs = 0;
    std::string error;
    for (const Arg& arg : wanted) {
      if (arg.md == nullptr) continue;
      dnnl_memory_t memory = nullptr;
      if (lib_.dnnl_memory_create(&memory, arg.md, lib_.engine, const_cast<void*>(arg.data)) != dnnl_success) {
        error = "cannot wrap a buffer in a oneDNN memory object";
        break;
      }
      args[nargs++] = {arg.index, memory};
    }
    if (error.empty()) {
      const dnnl_status_t status = lib_.dnnl_primitive_execute(primitive_, stream, nargs, args);
      if (status == dnnl_success) lib_.dnnl_stream_wait(stream);
      else error = "matmul execution failed (dnnl status " + std::to_string(status) + ")";
    }
    for (int i = 0; i < nargs; ++i) lib_.dnnl_memory_destroy(args[i].memory);
    return error;
  }

 private:
  const Api& lib_;
  dnnl_memory_desc_t a_ = nullptr, b_ = nullptr, c_ = nullptr, bias_ = nullptr, residual_ = nullptr;
  dnnl_primitive_desc_t pd_ = nullptr;
  dnnl_primitive_t primitive_ = nullptr;
  std::string error_;
};

// LRU cache of primitives. Entries are shared, so one evicted while another thread runs it stays alive until
// that run ends.
class PrimitiveCache {
 public:
  std::shared_ptr<const Primitive> get(const Api& lib, const GemmSpec& spec) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto found = index_.find(spec);
      if (found != index_.end()) {
        order_.splice(order_.begin(), order_, found->second);
        return found->second->second;
      }
    }
    // Created outside the lock (it is the slow part); a concurrent creation of the same spec just loses the race.
    auto created = std::make_shared<const Primitive>(lib, spec);
    if (!created->error().empty()) return created;  // not cached: the caller reports the error
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = index_.find(spec);
    if (found != index_.end()) return found->second->second;
    order_.emplace_front(spec, created);
    index_[spec] = order_.begin();
    while (static_cast<int64_t>(order_.size()) > kGemmCacheCapacity) {
      index_.erase(order_.back().first);
      order_.pop_back();
    }
    return created;
  }

  int64_t size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<int64_t>(order_.size());
  }

 private:
  using Item = std::pair<GemmSpec, std::shared_ptr<const Primitive>>;
  std::mutex mutex_;
  std::list<Item> order_;  // most recently used first
  std::unordered_map<GemmSpec, std::list<Item>::iterator, SpecHash> index_;
};

PrimitiveCache& cache() {
  static PrimitiveCache* instance = new PrimitiveCache();  // never destroyed: no teardown order with libdnnl
  return *instance;
}

GemmSpec with_threads(GemmSpec spec) {
  spec.threads = omp_get_max_threads();
  return spec;
}

}  // namespace

std::string onednn_gemm(const GemmSpec& spec, const float* a, const float* b, const float* bias,
                        const float* residual, float* c) {
  const Api* lib = onednn::api();
  if (lib == nullptr) return "oneDNN is unavailable: " + onednn::unavailable_reason();
  auto primitive = cache().get(*lib, with_threads(spec));
  if (!primitive->error().empty()) return primitive->error();
  return primitive->run(a, b, bias, residual, c);
}

std::string onednn_gemm_implementation(const GemmSpec& spec) {
  const Api* lib = onednn::api();
  if (lib == nullptr) return "oneDNN is unavailable: " + onednn::unavailable_reason();
  auto primitive = cache().get(*lib, with_threads(spec));
  return primitive->error().empty() ? primitive->implementation() : primitive->error();
}

int64_t onednn_gemm_cache_size() { return cache().size(); }

}  // namespace paddlemix_eva

// For the Python side (ctypes): the implementation of the forward GEMM [m, k] x [k, n] (bias, residual as
// given), written into buf.
extern "C" __attribute__((visibility("default"))) void paddlemix_eva_onednn_gemm_implementation(
    int64_t m, int64_t k, int64_t n, int bias, int residual, char* buf, size_t size) {
  paddlemix_eva::GemmSpec spec;
  spec.m = m;
  spec.k = k;
  spec.n = n;
  spec.bias = bias != 0;
  spec.residual = residual != 0;
  const std::string text = paddlemix_eva::onednn_gemm_implementation(spec);
  if (buf != nullptr && size > 0) {
    const size_t len = text.size() < size - 1 ? text.size() : size - 1;
    text.copy(buf, len);
    buf[len] = '\0';
  }
}

extern "C" __attribute__((visibility("default"))) int64_t paddlemix_eva_onednn_gemm_cache_size() {
  return paddlemix_eva::onednn_gemm_cache_size();
}
