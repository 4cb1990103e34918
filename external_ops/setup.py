"""Build the custom ops: `pip install --no-build-isolation ./external_ops` (or `make ops`).

Paddle must be importable while building (hence no build isolation): `paddle.utils.cpp_extension` compiles
against the installed Paddle's headers and library. The C++ CPU kernels are always built; the CUDA LayerNorm
kernel only when that Paddle is compiled with CUDA. Installs the Python package `paddlemix_eva_ops`
(`FusedLayerNorm`, the fused CPU linear / SwiGLU / RoPE functions) and the compiled module
`paddlemix_eva_ops_lib` it loads.

The fused linear op calls oneDNN through the libdnnl.so.3 in Paddle's wheel, resolved at run time (see
csrc/onednn_loader.cc). It is built only where that library exports every function csrc/onednn_api.h lists;
elsewhere the op reports oneDNN as unavailable and the Python wrapper uses `F.linear`.
"""
import ctypes
import logging
import os
import re
import sys

try:
    import paddle
    from paddle.utils.cpp_extension import CppExtension, CUDAExtension, setup
except ImportError:
    sys.exit(
        "external_ops: Paddle is not importable in this build environment. The op is compiled against the Paddle "
        "you run, which pip's build isolation hides: install with `pip install --no-build-isolation ./external_ops` "
        "(or `make ops`) in the environment that has paddlepaddle installed."
    )

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = [
    os.path.join("csrc", name)
    for name in (
        "layer_norm_op.cc", "layer_norm_cpu.cc",
        "onednn_loader.cc", "onednn_matmul.cc", "linear_op.cc", "linear_cpu.cc",
        "swiglu_op.cc", "rope_op.cc", "rope_cpu.cc", "softmax_op.cc",
    )
]
# -fno-trapping-math lets GCC if-convert (and so vectorise) the clamps of the SIMD exp in csrc/cpu_simd.h; no
# kernel relies on floating-point exceptions, and it changes no result.
CXX_FLAGS = ["-O3", "-fopenmp", "-std=c++17", "-fno-trapping-math"]
PADDLE_LIBS = os.path.join(os.path.dirname(paddle.__file__), "libs")
ONEDNN_LIBRARY = os.path.join(PADDLE_LIBS, "libdnnl.so.3")


def onednn_functions() -> list:
    """The oneDNN functions the op resolves: the names in csrc/onednn_api.h's X-macro list."""
    with open(os.path.join(HERE, "csrc", "onednn_api.h")) as f:
        return re.findall(r"^\s*X\((dnnl_\w+),", f.read(), flags=re.M)


def onednn_flags() -> list:
    """-D flags for the oneDNN part: the build-time library path (a fallback location at run time), or
    PADDLEMIX_EVA_NO_ONEDNN when Paddle's libdnnl.so.3 is missing or lacks a function, so the build never fails
    over it."""
    try:
        library = ctypes.CDLL(ONEDNN_LIBRARY)
    except OSError as err:
        logging.warning("external_ops: no usable %s (%s); fused linear falls back to F.linear", ONEDNN_LIBRARY, err)
        return ["-DPADDLEMIX_EVA_NO_ONEDNN"]
    missing = [name for name in onednn_functions() if not hasattr(library, name)]
    if missing:
        logging.warning("external_ops: %s lacks %s; fused linear falls back to F.linear", ONEDNN_LIBRARY, missing)
        return ["-DPADDLEMIX_EVA_NO_ONEDNN"]
    return [f'-DPADDLEMIX_EVA_ONEDNN_BUILD_PATH="{ONEDNN_LIBRARY}"']


def openmp_link_flags():
    """Link the OpenMP loops against the Intel OpenMP runtime Paddle ships for MKL (it implements the GOMP entry
    points GCC emits), so the op and Paddle's matmuls share one thread pool. With GCC's own libgomp next to it,
    the two runtimes' spinning workers fought over the cores: a LayerNorm followed by a matmul took 1.6x as long
    as the two did apart."""
    if os.path.isfile(os.path.join(PADDLE_LIBS, "libiomp5.so")):
        return [f"-L{PADDLE_LIBS}", "-liomp5", "-Wl,-rpath,$ORIGIN/../paddle/libs", f"-Wl,-rpath,{PADDLE_LIBS}"]
    return ["-fopenmp"]


LINK_FLAGS = openmp_link_flags() + ["-ldl"]
CXX_FLAGS += onednn_flags()


def extension():
    if paddle.is_compiled_with_cuda():
        return CUDAExtension(
            sources=SOURCES + [os.path.join("csrc", name) for name in ("layer_norm_cuda_op.cc", "layer_norm_cuda.cu")],
            extra_compile_args={
                "cxx": CXX_FLAGS + ["-DPADDLEMIX_EVA_WITH_CUDA"],
                "nvcc": ["-O3", "-std=c++17", "--expt-relaxed-constexpr"],
            },
            extra_link_args=LINK_FLAGS,
        )
    return CppExtension(sources=SOURCES, extra_compile_args={"cxx": CXX_FLAGS}, extra_link_args=LINK_FLAGS)


os.chdir(HERE)
setup(
    name="paddlemix_eva_ops_lib",
    version="0.1.0",
    description="FusedLayerNorm (C++ CPU, CUDA) and fused CPU linear / SwiGLU / RoPE custom ops for paddlemix-eva",
    ext_modules=extension(),
    packages=["paddlemix_eva_ops"],
)
