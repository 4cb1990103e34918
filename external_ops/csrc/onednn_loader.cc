// Resolves the oneDNN C API (onednn_api.h) at first use, from the libdnnl.so.3 Paddle has already loaded.
//
// Sharing Paddle's instance matters: one primitive cache, one set of JIT kernels, and its OpenMP calls already
// bound to Paddle's libiomp5 (the library's NEEDED entry names libgomp, but in a Paddle process the GOMP_* / omp_*
// references resolve to libiomp5, which Paddle loads first), so oneDNN's GEMMs, Paddle's kernels and this
// extension's loops share one thread pool. Lookup order:
//   1. $PADDLEMIX_EVA_ONEDNN_LIBRARY, when set (a path or a soname; tests point it at a missing or wrong library
//      to exercise the fallback),
//   2. the libdnnl.so.3 already in the process,
//   3. paddle/libs/libdnnl.so.3 next to this extension ($ORIGIN/../paddle/libs) and at its build-time path, the
//      places the extension's rpath names for libiomp5.
#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "onednn_api.h"

#ifndef PADDLEMIX_EVA_ONEDNN_BUILD_PATH
#define PADDLEMIX_EVA_ONEDNN_BUILD_PATH ""
#endif

namespace paddlemix_eva {
namespace onednn {
namespace {

constexpr char kSoname[] = "libdnnl.so.3";
constexpr char kLibraryEnv[] = "PADDLEMIX_EVA_ONEDNN_LIBRARY";

struct Loaded {
  Api api;
  bool ok = false;
  std::string reason;
  std::string library;
};

#ifndef PADDLEMIX_EVA_NO_ONEDNN
std::string own_directory() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&own_directory), &info) == 0 || info.dli_fname == nullptr) return "";
  std::string path(info.dli_fname);
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

void* open_library(std::string* name, std::string* reason) {
  if (const char* forced = std::getenv(kLibraryEnv)) {
    *name = forced;
    void* handle = dlopen(forced, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) *reason = std::string("cannot load ") + forced + " ($" + kLibraryEnv + "): " + dlerror();
    return handle;
  }
  if (void* handle = dlopen(kSoname, RTLD_NOW | RTLD_NOLOAD)) {
    *name = std::string(kSoname) + " (loaded by Paddle)";
    return handle;
  }
  std::vector<std::string> candidates;
  const std::string here = own_directory();
  if (!here.empty()) candidates.push_back(here + "/../paddle/libs/" + kSoname);
  if (PADDLEMIX_EVA_ONEDNN_BUILD_PATH[0] != '\0') candidates.push_back(PADDLEMIX_EVA_ONEDNN_BUILD_PATH);
  std::string tried;
  for (const auto& path : candidates) {
    if (void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      *name = path;
      return handle;
    }
    tried += (tried.empty() ? "" : ", ") + path;
  }
  *reason = std::string(kSoname) + " is neither loaded in this process nor found at " +
            (tried.empty() ? std::string("any known path") : tried);
  return nullptr;
}
#endif

Loaded load() {
  Loaded out;
#ifdef PADDLEMIX_EVA_NO_ONEDNN
  out.reason = "the extension was built without oneDNN (setup.py found no usable paddle/libs/libdnnl.so.3)";
  return out;
#else
  void* handle = open_library(&out.library, &out.reason);
  if (handle == nullptr) return out;
  std::string missing;
#define PADDLEMIX_EVA_ONEDNN_RESOLVE(name, ret, params)                                     \
  out.api.name = reinterpret_cast<ret(*) params>(dlsym(handle, #name));                     \
  if (out.api.name == nullptr) missing += (missing.empty() ? "" : ", ") + std::string(#name);
  PADDLEMIX_EVA_ONEDNN_FUNCTIONS(PADDLEMIX_EVA_ONEDNN_RESOLVE)
#undef PADDLEMIX_EVA_ONEDNN_RESOLVE
  if (!missing.empty()) {
    out.reason = out.library + " lacks " + missing;
    return out;
  }
  const dnnl_version_t* version = out.api.dnnl_version();
  if (version == nullptr || version->major != 3) {
    out.reason = out.library + " is not oneDNN v3";
    return out;
  }
  if (out.api.dnnl_engine_create(&out.api.engine, dnnl_cpu, 0) != dnnl_success) {
    out.reason = out.library + ": cannot create a CPU engine";
    return out;
  }
  out.ok = true;
  return out;
#endif
}

const Loaded& loaded() {
  static const Loaded instance = load();  // thread-safe one-time initialisation
  return instance;
}

const char* runtime_name(unsigned runtime) {
  switch (runtime) {
    case DNNL_RUNTIME_SEQ: return "sequential";
    case DNNL_RUNTIME_OMP: return "OpenMP";
    case DNNL_RUNTIME_TBB: return "TBB";
    case DNNL_RUNTIME_THREADPOOL: return "threadpool";
    default: return "unknown";
  }
}

const char* isa_name(int isa) {
  switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx2_vnni_2: return "avx2_vnni_2";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_fp16: return "avx512_core_fp16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx512_core_amx_fp16: return "avx512_core_amx_fp16";
    default: return "other";
  }
}

// Destroys the thread's stream when the thread exits.
struct ThreadStream {
  dnnl_stream_t stream = nullptr;
  ~ThreadStream() {
    if (stream != nullptr && api() != nullptr) api()->dnnl_stream_destroy(stream);
  }
};

}  // namespace

const Api* api() { return loaded().ok ? &loaded().api : nullptr; }

const std::string& unavailable_reason() { return loaded().reason; }

dnnl_stream_t thread_stream() {
  thread_local ThreadStream local;
  if (local.stream == nullptr) {
    const Api* lib = api();
    if (lib == nullptr || lib->dnnl_stream_create(&local.stream, lib->engine, dnnl_stream_in_order) != dnnl_success)
      return nullptr;
  }
  return local.stream;
}

std::string describe() {
  const Api* lib = api();
  if (lib == nullptr) return "unavailable: " + unavailable_reason();
  const dnnl_version_t* v = lib->dnnl_version();
  std::ostringstream out;
  out << "oneDNN " << v->major << "." << v->minor << "." << v->patch << " (" << runtime_name(v->cpu_runtime)
      << " runtime), ISA " << isa_name(lib->dnnl_get_effective_cpu_isa()) << ", from " << loaded().library;
  return out.str();
}

}  // namespace onednn
}  // namespace paddlemix_eva

// For the Python side (ctypes): writes `describe()` into buf and returns 1 when the API is usable, else 0.
extern "C" __attribute__((visibility("default"))) int paddlemix_eva_onednn_describe(char* buf, size_t size) {
  const std::string text = paddlemix_eva::onednn::describe();
  if (buf != nullptr && size > 0) {
    const size_t n = text.size() < size - 1 ? text.size() : size - 1;
    text.copy(buf, n);
    buf[n] = '\0';
  }
  return paddlemix_eva::onednn::api() != nullptr ? 1 : 0;
}
