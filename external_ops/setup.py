"""Build the FusedLayerNorm custom op: `pip install --no-build-isolation ./external_ops` (or `make ops`).

Paddle must be importable while building (hence no build isolation): `paddle.utils.cpp_extension` compiles
against the installed Paddle's headers and library. The C++ CPU kernel is always built; the CUDA kernel only when
that Paddle is compiled with CUDA. Installs the Python package `paddlemix_eva_ops` (the `FusedLayerNorm` layer)
and the compiled module `paddlemix_eva_ops_lib` it loads.
"""
import os
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
SOURCES = [os.path.join("csrc", name) for name in ("layer_norm_op.cc", "layer_norm_cpu.cc")]
CXX_FLAGS = ["-O3", "-fopenmp", "-std=c++17"]


def openmp_link_flags():
    """Link the OpenMP loops against the Intel OpenMP runtime Paddle ships for MKL (it implements the GOMP entry
    points GCC emits), so the op and Paddle's matmuls share one thread pool. With GCC's own libgomp next to it,
    the two runtimes' spinning workers fought over the cores: a LayerNorm followed by a matmul took 1.6x as long
    as the two did apart."""
    paddle_libs = os.path.join(os.path.dirname(paddle.__file__), "libs")
    if os.path.isfile(os.path.join(paddle_libs, "libiomp5.so")):
        return [f"-L{paddle_libs}", "-liomp5", "-Wl,-rpath,$ORIGIN/../paddle/libs", f"-Wl,-rpath,{paddle_libs}"]
    return ["-fopenmp"]


LINK_FLAGS = openmp_link_flags()


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
    description="FusedLayerNorm custom op (C++ CPU, CUDA) for paddlemix-eva",
    ext_modules=extension(),
    packages=["paddlemix_eva_ops"],
)
