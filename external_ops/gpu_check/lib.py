"""ctypes binding of the check's shared library (shim.cu): calls the op's launchers on PyTorch-owned buffers,
on PyTorch's current stream."""
from __future__ import annotations

import ctypes
from typing import Dict, Optional, Tuple

import torch

#: dtype codes of shim.cu's to_dtype
DTYPE_CODES: Dict[str, int] = {"float32": 0, "float64": 1, "float16": 2, "bfloat16": 3}
#: cudaErrorInvalidValue, what the shim returns for a dtype pair the op refuses
CUDA_ERROR_INVALID_VALUE = 1

_p, _i, _i64, _f = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
_SIGNATURES = {
    "pme_ln_forward": (_i, [_i, _i, _p, _p, _p, _p, _p, _p, _i64, _i64, _f, _p]),
    "pme_ln_backward": (_i, [_i, _i, _p, _p, _p, _p, _p, _p, _p, _p, _p, _i64, _i64, _p]),
    "pme_ln_backward_workspace_floats": (_i64, [_i64, _i64]),
    "pme_ln_set_device": (_i, [_i]),
    "pme_ln_error_string": (ctypes.c_char_p, [_i]),
    "pme_ln_runtime_version": (_i, []),
    "pme_ln_driver_version": (_i, []),
}


class KernelError(RuntimeError):
    """A launcher returned a CUDA error."""


def dtype_name(tensor: torch.Tensor) -> str:
    """'float32' for torch.float32, and so on."""
    return str(tensor.dtype).replace("torch.", "")


def _ptr(tensor: torch.Tensor) -> Optional[int]:
    return tensor.data_ptr() or None


class LayerNormLibrary:
    """The loaded .so; forward / backward write into caller-allocated tensors (so timing excludes allocation)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._dll = ctypes.CDLL(path)
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(self._dll, name)
            fn.restype, fn.argtypes = restype, argtypes

    def error_string(self, code: int) -> str:
        return self._dll.pme_ln_error_string(code).decode()

    def _check(self, code: int, what: str) -> None:
        if code != 0:
            raise KernelError(f"{what}: CUDA error {code} ({self.error_string(code)})")

    def runtime_version(self) -> int:
        return self._dll.pme_ln_runtime_version()

    def driver_version(self) -> int:
        return self._dll.pme_ln_driver_version()

    def set_device(self, device: int) -> None:
        self._check(self._dll.pme_ln_set_device(device), f"cudaSetDevice({device})")

    def workspace_floats(self, rows: int, hidden: int) -> int:
        return self._dll.pme_ln_backward_workspace_floats(rows, hidden)

    def forward(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, y: torch.Tensor, mean: torch.Tensor,
                rstd: torch.Tensor, eps: float) -> None:
        rows, hidden = _matrix(x)
        _expect(w, (hidden,), None, x.device)
        _expect(b, (hidden,), w.dtype, x.device)
        _expect(y, (rows, hidden), x.dtype, x.device)
        _expect(mean, (rows,), torch.float32, x.device)
        _expect(rstd, (rows,), torch.float32, x.device)
        code = self._dll.pme_ln_forward(
            DTYPE_CODES[dtype_name(x)], DTYPE_CODES[dtype_name(w)], _ptr(x), _ptr(w), _ptr(b), _ptr(y), _ptr(mean),
            _ptr(rstd), rows, hidden, eps, torch.cuda.current_stream(x.device).cuda_stream)
        self._check(code, "launch_layer_norm_forward")

    def backward(self, x: torch.Tensor, w: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, dy: torch.Tensor,
                 dx: torch.Tensor, dscale: torch.Tensor, dbias: torch.Tensor, workspace: torch.Tensor) -> None:
        rows, hidden = _matrix(x)
        _expect(w, (hidden,), None, x.device)
        for t in (mean, rstd):
            _expect(t, (rows,), torch.float32, x.device)
        for t in (dy, dx):
            _expect(t, (rows, hidden), x.dtype, x.device)
        for t in (dscale, dbias):
            _expect(t, (hidden,), w.dtype, x.device)
        _expect(workspace, (self.workspace_floats(rows, hidden),), torch.float32, x.device)
        code = self._dll.pme_ln_backward(
            DTYPE_CODES[dtype_name(x)], DTYPE_CODES[dtype_name(w)], _ptr(x), _ptr(w), _ptr(mean), _ptr(rstd),
            _ptr(dy), _ptr(dx), _ptr(dscale), _ptr(dbias), _ptr(workspace), rows, hidden,
            torch.cuda.current_stream(x.device).cuda_stream)
        self._check(code, "launch_layer_norm_backward")


def _matrix(x: torch.Tensor) -> Tuple[int, int]:
    if x.dim() != 2 or not x.is_contiguous() or not x.is_cuda:
        raise ValueError(f"x must be a contiguous 2-d CUDA tensor, got shape {tuple(x.shape)} on {x.device}")
    return int(x.shape[0]), int(x.shape[1])


def _expect(t: torch.Tensor, shape: Tuple[int, ...], dtype: Optional[torch.dtype], device: torch.device) -> None:
    """Refuses a buffer the kernels would read or write out of bounds (or in the wrong format)."""
    if tuple(t.shape) != shape or (dtype is not None and t.dtype != dtype) or t.device != device \
            or not t.is_contiguous():
        raise ValueError(f"expected a contiguous {shape} {dtype} tensor on {device}, got {tuple(t.shape)} "
                         f"{t.dtype} on {t.device}")
