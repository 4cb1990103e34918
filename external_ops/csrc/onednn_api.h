// The few parts of oneDNN's v3 C API the fused linear op calls, declared here because Paddle's wheel ships
// libdnnl.so.3 but not its headers.
//
// Values and signatures follow the oneDNN v3 C API reference (dnnl.h / dnnl_types.h); oneDNN keeps its C ABI
// stable within a major version, and tests/test_fused_cpu_ops.py compares every constant below against the
// headers torch ships where torch is importable. Enums are passed as `int` (what a C enum is on x86-64 / AArch64
// Linux). The functions are not linked: `onednn()` resolves them at first use from the libdnnl.so.3 Paddle has
// already loaded (see onednn_loader.cc), so a missing library or symbol disables the op instead of breaking the
// import of the whole extension.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace paddlemix_eva {
namespace onednn {

// Opaque handles (pointers to library-owned objects)
using dnnl_engine_t = struct dnnl_engine*;
using dnnl_stream_t = struct dnnl_stream*;
using dnnl_memory_desc_t = struct dnnl_memory_desc*;
using const_dnnl_memory_desc_t = const struct dnnl_memory_desc*;
using dnnl_memory_t = struct dnnl_memory*;
using dnnl_primitive_desc_t = struct dnnl_primitive_desc*;
using const_dnnl_primitive_desc_t = const struct dnnl_primitive_desc*;
using dnnl_primitive_t = struct dnnl_primitive*;
using const_dnnl_primitive_t = const struct dnnl_primitive*;
using dnnl_primitive_attr_t = struct dnnl_primitive_attr*;
using const_dnnl_primitive_attr_t = const struct dnnl_primitive_attr*;
using dnnl_post_ops_t = struct dnnl_post_ops*;
using const_dnnl_post_ops_t = const struct dnnl_post_ops*;

using dnnl_status_t = int;
using dnnl_dim_t = int64_t;
constexpr int DNNL_MAX_NDIMS = 12;
using dnnl_dims_t = dnnl_dim_t[DNNL_MAX_NDIMS];

struct dnnl_exec_arg_t {
  int arg;
  dnnl_memory_t memory;
};

struct dnnl_version_t {
  int major;
  int minor;
  int patch;
  const char* hash;
  unsigned cpu_runtime;
  unsigned gpu_runtime;
};

// dnnl_status_t
constexpr int dnnl_success = 0;
constexpr int dnnl_out_of_memory = 1;
constexpr int dnnl_invalid_arguments = 2;
constexpr int dnnl_unimplemented = 3;
// dnnl_data_type_t
constexpr int dnnl_f32 = 3;
// dnnl_engine_kind_t
constexpr int dnnl_cpu = 1;
// dnnl_stream_flags_t
constexpr unsigned dnnl_stream_in_order = 0x1U;
// dnnl_alg_kind_t
constexpr int dnnl_binary_add = 0x1fff0;
// dnnl_fpmath_mode_t: no implicit down-conversion of f32 math (bf16 / tf32), whatever the process default is
constexpr int dnnl_fpmath_mode_strict = 0;
// dnnl_query_t
constexpr int dnnl_query_impl_info_str = 8;
// dnnl_version_t::cpu_runtime
constexpr unsigned DNNL_RUNTIME_SEQ = 1U;
constexpr unsigned DNNL_RUNTIME_OMP = 2U;
constexpr unsigned DNNL_RUNTIME_TBB = 4U;
constexpr unsigned DNNL_RUNTIME_THREADPOOL = 8U;
// dnnl_cpu_isa_t (the values dnnl_get_effective_cpu_isa reports)
constexpr int dnnl_cpu_isa_sse41 = 0x1;
constexpr int dnnl_cpu_isa_avx = 0x3;
constexpr int dnnl_cpu_isa_avx2 = 0x7;
constexpr int dnnl_cpu_isa_avx2_vnni = 0xf;
constexpr int dnnl_cpu_isa_avx2_vnni_2 = 0x1f;
constexpr int dnnl_cpu_isa_avx512_core = 0x27;
constexpr int dnnl_cpu_isa_avx512_core_vnni = 0x67;
constexpr int dnnl_cpu_isa_avx512_core_bf16 = 0xe7;
constexpr int dnnl_cpu_isa_avx512_core_fp16 = 0x1ef;
constexpr int dnnl_cpu_isa_avx512_core_amx = 0xfef;
constexpr int dnnl_cpu_isa_avx512_core_amx_fp16 = 0x1fef;
// Execution argument indices
constexpr int DNNL_ARG_SRC = 1;
constexpr int DNNL_ARG_SRC_1 = 2;
constexpr int DNNL_ARG_DST = 17;
constexpr int DNNL_ARG_WEIGHTS = 33;
constexpr int DNNL_ARG_BIAS = 41;
constexpr int DNNL_ARG_ATTR_MULTIPLE_POST_OP_BASE = 32768;
constexpr int DNNL_ARG_ATTR_MULTIPLE_POST_OP(int index) { return DNNL_ARG_ATTR_MULTIPLE_POST_OP_BASE * (index + 1); }

// X(name, return type, parameter list): every function the op resolves. setup.py reads the names from this list
// to check the library before building.
#define PADDLEMIX_EVA_ONEDNN_FUNCTIONS(X)                                                                          \
  X(dnnl_version, const dnnl_version_t*, (void))                                                                   \
  X(dnnl_get_effective_cpu_isa, int, (void))                                                                       \
  X(dnnl_engine_create, dnnl_status_t, (dnnl_engine_t*, int kind, size_t index))                                   \
  X(dnnl_stream_create, dnnl_status_t, (dnnl_stream_t*, dnnl_engine_t, unsigned flags))                            \
  X(dnnl_stream_destroy, dnnl_status_t, (dnnl_stream_t))                                                           \
  X(dnnl_memory_desc_create_with_strides, dnnl_status_t,                                                           \
    (dnnl_memory_desc_t*, int ndims, const dnnl_dims_t dims, int data_type, const dnnl_dims_t strides))            \
  X(dnnl_memory_desc_destroy, dnnl_status_t, (dnnl_memory_desc_t))                                                 \
  X(dnnl_memory_create, dnnl_status_t, (dnnl_memory_t*, const_dnnl_memory_desc_t, dnnl_engine_t, void* handle))    \
  X(dnnl_memory_destroy, dnnl_status_t, (dnnl_memory_t))                                                           \
  X(dnnl_post_ops_create, dnnl_status_t, (dnnl_post_ops_t*))                                                       \
  X(dnnl_post_ops_append_binary, dnnl_status_t, (dnnl_post_ops_t, int alg_kind, const_dnnl_memory_desc_t src1))    \
  X(dnnl_post_ops_destroy, dnnl_status_t, (dnnl_post_ops_t))                                                       \
  X(dnnl_primitive_attr_create, dnnl_status_t, (dnnl_primitive_attr_t*))                                           \
  X(dnnl_primitive_attr_set_fpmath_mode, dnnl_status_t, (dnnl_primitive_attr_t, int mode))                         \
  X(dnnl_primitive_attr_set_post_ops, dnnl_status_t, (dnnl_primitive_attr_t, const_dnnl_post_ops_t))               \
  X(dnnl_primitive_attr_destroy, dnnl_status_t, (dnnl_primitive_attr_t))                                           \
  X(dnnl_matmul_primitive_desc_create, dnnl_status_t,                                                              \
    (dnnl_primitive_desc_t*, dnnl_engine_t, const_dnnl_memory_desc_t src, const_dnnl_memory_desc_t weights,        \
     const_dnnl_memory_desc_t bias, const_dnnl_memory_desc_t dst, const_dnnl_primitive_attr_t))                    \
  X(dnnl_primitive_desc_query, dnnl_status_t, (const_dnnl_primitive_desc_t, int what, int index, void* result))    \
  X(dnnl_primitive_desc_destroy, dnnl_status_t, (dnnl_primitive_desc_t))                                           \
  X(dnnl_primitive_create, dnnl_status_t, (dnnl_primitive_t*, const_dnnl_primitive_desc_t))                        \
  X(dnnl_primitive_execute, dnnl_status_t, (const_dnnl_primitive_t, dnnl_stream_t, int nargs,                      \
                                            const dnnl_exec_arg_t* args))                                          \
  X(dnnl_primitive_destroy, dnnl_status_t, (dnnl_primitive_t))                                                     \
  X(dnnl_stream_wait, dnnl_status_t, (dnnl_stream_t))

// Function pointers into the loaded library, one member per function above.
struct Api {
#define PADDLEMIX_EVA_ONEDNN_MEMBER(name, ret, params) ret(*name) params = nullptr;
  PADDLEMIX_EVA_ONEDNN_FUNCTIONS(PADDLEMIX_EVA_ONEDNN_MEMBER)
#undef PADDLEMIX_EVA_ONEDNN_MEMBER
  dnnl_engine_t engine = nullptr;  // the CPU engine every primitive of the op is created on
};

// The resolved API, or nullptr when the library, a function or the CPU engine is missing (`unavailable_reason()`
// says which). Resolved once, thread-safe.
const Api* api();
const std::string& unavailable_reason();

// A thread's own in-order CPU stream (oneDNN streams are not meant to be shared between threads).
dnnl_stream_t thread_stream();

// "oneDNN 3.6.2 (OpenMP runtime), ISA avx512_core_amx" or the reason it is unavailable
std::string describe();

}  // namespace onednn
}  // namespace paddlemix_eva
