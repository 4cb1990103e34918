"""What the compiled extension found of oneDNN (the fused linear op's GEMMs), read through ctypes.

The extension resolves oneDNN's C API at first use from the libdnnl.so.3 Paddle loaded (csrc/onednn_loader.cc);
`PADDLEMIX_EVA_ONEDNN_LIBRARY` points it at another library file (the tests use a missing one and one without
the symbols). Where oneDNN is unusable the fused linear falls back to `F.linear`.
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import paddlemix_eva_ops_lib

__all__ = ["OneDNNInfo", "onednn_info", "onednn_available", "gemm_implementation", "gemm_cache_size"]

_BUFFER = 1024


@dataclass(frozen=True)
class OneDNNInfo:
    """available: the fused linear op can run; description: version, threading runtime, ISA and library, or why
    it is unavailable."""

    available: bool
    description: str


def _library_path() -> str:
    path = getattr(paddlemix_eva_ops_lib, "so_path", None)
    if path:
        return path
    return os.path.join(os.path.dirname(paddlemix_eva_ops_lib.__file__), "paddlemix_eva_ops_lib_pd_.so")


@lru_cache(maxsize=None)
def _extension() -> Optional[ctypes.CDLL]:
    """The already-loaded extension (dlopen of the same path returns the same instance), or None when it predates
    the oneDNN entry points."""
    try:
        lib = ctypes.CDLL(_library_path())
        describe = lib.paddlemix_eva_onednn_describe
        gemm = lib.paddlemix_eva_onednn_gemm_implementation
        cache = lib.paddlemix_eva_onednn_gemm_cache_size
    except (OSError, AttributeError):
        return None
    describe.argtypes, describe.restype = [ctypes.c_char_p, ctypes.c_size_t], ctypes.c_int
    gemm.argtypes = [ctypes.c_int64] * 3 + [ctypes.c_int] * 2 + [ctypes.c_char_p, ctypes.c_size_t]
    gemm.restype = None
    cache.argtypes, cache.restype = [], ctypes.c_int64
    return lib


@lru_cache(maxsize=None)
def onednn_info() -> OneDNNInfo:
    """Resolved once per process (the extension caches its own answer too)."""
    lib = _extension()
    if lib is None:
        return OneDNNInfo(False, "the installed extension has no oneDNN entry points (rebuild with `make ops`)")
    buf = ctypes.create_string_buffer(_BUFFER)
    ok = lib.paddlemix_eva_onednn_describe(buf, _BUFFER)
    return OneDNNInfo(bool(ok), buf.value.decode(errors="replace"))


def onednn_available() -> bool:
    return onednn_info().available


def gemm_implementation(m: int, k: int, n: int, bias: bool = False, residual: bool = False) -> str:
    """The oneDNN implementation the forward GEMM [m, k] x [k, n] runs (e.g. 'brg_matmul:avx512_core')."""
    lib = _extension()
    if lib is None:
        return onednn_info().description
    buf = ctypes.create_string_buffer(_BUFFER)
    lib.paddlemix_eva_onednn_gemm_implementation(int(m), int(k), int(n), int(bias), int(residual), buf, _BUFFER)
    return buf.value.decode(errors="replace")


def gemm_cache_size() -> int:
    """Primitives in the extension's GEMM cache (bounded; creation is the expensive part of a oneDNN GEMM)."""
    lib = _extension()
    return int(lib.paddlemix_eva_onednn_gemm_cache_size()) if lib is not None else 0
