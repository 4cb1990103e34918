"""Runs one case: our kernels and PyTorch's on the same inputs, each output against the float64 reference."""
from __future__ import annotations

import logging
import time
from typing import Dict, List, Sequence

import torch

from .cases import Case
from .compare import check_output
from .inputs import Inputs, make_inputs
from .lib import LayerNormLibrary
from .reference import Reference, reference
from .results import CaseResult, OutputCheck
from .tolerance import OUTPUTS, bounds, tolerance

log = logging.getLogger(__name__)


def _synchronize(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


def run_ours(lib: LayerNormLibrary, inputs: Inputs, eps: float) -> Dict[str, torch.Tensor]:
    """Forward, then backward from the forward's own mean and 1/std (as the op's autograd does)."""
    x, w = inputs.x, inputs.w
    rows, hidden = x.shape
    y = torch.empty_like(x)
    mean = torch.empty(rows, dtype=torch.float32, device=x.device)
    rstd = torch.empty_like(mean)
    lib.forward(x, w, inputs.b, y, mean, rstd, eps)
    dx, dscale, dbias = torch.empty_like(x), torch.empty_like(w), torch.empty_like(w)
    workspace = torch.empty(lib.workspace_floats(rows, hidden), dtype=torch.float32, device=x.device)
    lib.backward(x, w, mean, rstd, inputs.dy, dx, dscale, dbias, workspace)
    _synchronize(x)  # an asynchronous kernel fault surfaces in this case, not a later one
    return {"y": y, "mean": mean, "rstd": rstd, "dx": dx, "dscale": dscale, "dbias": dbias}


def run_torch(inputs: Inputs, eps: float) -> Dict[str, torch.Tensor]:
    """PyTorch's own kernels (native_layer_norm and its backward) in the inputs' dtypes."""
    x, w, b = inputs.x, inputs.w, inputs.b
    shape = [x.shape[-1]]
    y, mean, rstd = torch.ops.aten.native_layer_norm(x, shape, w, b, eps)
    dx, dscale, dbias = torch.ops.aten.native_layer_norm_backward(inputs.dy, x, shape, mean, rstd, w, b,
                                                                  [True, True, True])
    _synchronize(x)
    return {"y": y, "mean": mean, "rstd": rstd, "dx": dx, "dscale": dscale, "dbias": dbias}


def _checks(got: Dict[str, torch.Tensor], refs: Dict[str, torch.Tensor],
            tols: Dict[str, torch.Tensor]) -> Dict[str, OutputCheck]:
    return {name: check_output(got[name], refs[name], tols[name]) for name in OUTPUTS}


def _references(ref: Reference) -> Dict[str, torch.Tensor]:
    return {"y": ref.y, "mean": ref.mean.reshape(-1), "rstd": ref.rstd.reshape(-1), "dx": ref.dx,
            "dscale": ref.dscale, "dbias": ref.dbias}


def run_case(lib: LayerNormLibrary, case: Case, device: torch.device, with_torch: bool = True) -> CaseResult:
    """Never raises: an exception (launch error, fault, out of memory) becomes the case's error and fails it.
    PyTorch's outputs are checked for information only, where it takes the pair (weights in x's dtype)."""
    start = time.perf_counter()
    result = CaseResult(case)
    try:
        inputs = make_inputs(case, device)
        ref = reference(inputs, case.eps)
        extra = bounds(ref.x, ref.w, ref.b, ref.dy, ref.mean, ref.rstd, ref.dx, case.x_dtype, case.w_dtype)
        refs = _references(ref)
        tols = {name: tolerance(name, refs[name], extra[name], case.x_dtype, case.w_dtype) for name in OUTPUTS}
        del extra
        result.ours = _checks(run_ours(lib, inputs, case.eps), refs, tols)
        if with_torch and case.w_dtype == case.x_dtype:
            try:
                result.torch = _checks(run_torch(inputs, case.eps), refs, tols)
            except Exception as exc:  # noqa: BLE001 - information only, never fails our case
                log.warning("%s: PyTorch's kernels failed: %s", case.label, exc)
    except Exception as exc:  # noqa: BLE001 - every case is run and reported
        result.error = f"{type(exc).__name__}: {exc}"
    result.seconds = time.perf_counter() - start
    return result


def run_cases(lib: LayerNormLibrary, cases: Sequence[Case], device: torch.device,
              with_torch: bool = True) -> List[CaseResult]:
    """Every case, in order, one log line each; frees the device's cached memory between the large ones."""
    results = []
    for index, case in enumerate(cases, 1):
        result = run_case(lib, case, device, with_torch)
        results.append(result)
        level = logging.INFO if result.passed else logging.ERROR
        log.log(level, "[%d/%d] %s %s (%.2fs)", index, len(cases), "PASS" if result.passed else "FAIL",
                case.label, result.seconds)
        if result.error:
            log.error("    %s", result.error)
        else:
            for name, check in result.ours.items():
                if not check.passed:
                    log.error("    %s: %d of %d elements outside, max error %.3g, worst error/tolerance %.3g",
                              name, check.failed, check.elements, check.max_error, check.worst_ratio)
        if case.elements > 1 << 22 and device.type == "cuda":
            torch.cuda.empty_cache()
    return results
