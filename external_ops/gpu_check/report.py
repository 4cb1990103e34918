"""Formats the results: plain-text tables for the terminal, Markdown and JSON files."""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .bandwidth import BandwidthRow
from .cases import DTYPE_PAIRS
from .results import CaseResult
from .tolerance import OUTPUTS


def _num(value: float, digits: int = 3) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}g}"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]], markdown: bool = False) -> str:
    """Columns padded to their widest cell; with `markdown`, a pipe table (numbers right-aligned)."""
    rows = [list(map(str, r)) for r in rows]
    if markdown:
        align = ["---:" if rows and _looks_numeric(rows[0][i]) else "---" for i in range(len(headers))]
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _looks_numeric(cell: str) -> bool:
    try:
        float(cell.split()[0].rstrip("%x"))
    except (ValueError, IndexError):
        return False
    return True


def _worst(results: Sequence[CaseResult], side: str, output: str) -> Optional[float]:
    """Largest error / tolerance of one output over `results` (nan wins); None where no case has it."""
    values = [getattr(r, side)[output].worst_ratio for r in results if output in getattr(r, side)]
    if not values:
        return None
    return float("nan") if any(math.isnan(v) for v in values) else max(values)


def summary_rows(results: Sequence[CaseResult]) -> List[List[str]]:
    """One row per (x dtype, weight dtype): cases, failures, worst error/tolerance of each output (ours, and
    PyTorch's in brackets where it was run)."""
    out = []
    pairs = [p for p in DTYPE_PAIRS if any((r.case.x_dtype, r.case.w_dtype) == p for r in results)]
    for x_dtype, w_dtype in pairs:
        group = [r for r in results if (r.case.x_dtype, r.case.w_dtype) == (x_dtype, w_dtype)]
        row = [f"{x_dtype}/{w_dtype}", str(len(group)), str(sum(not r.passed for r in group))]
        for output in OUTPUTS:
            ours, theirs = _worst(group, "ours", output), _worst(group, "torch", output)
            cell = "-" if ours is None else _num(ours, 2)
            row.append(cell if theirs is None else f"{cell} ({_num(theirs, 2)})")
        out.append(row)
    return out


SUMMARY_HEADERS = ["x/w dtype", "cases", "failed"] + [f"{o} err/tol" for o in OUTPUTS]


def case_rows(results: Sequence[CaseResult]) -> List[List[str]]:
    """One row per case: the worst error/tolerance of each of our outputs, or the error that stopped it."""
    out = []
    for r in results:
        cells = [_num(r.ours[o].worst_ratio, 2) if o in r.ours else "-" for o in OUTPUTS]
        status = "PASS" if r.passed else "FAIL" + (f" ({r.error})" if r.error else "")
        out.append([r.case.label] + cells + [status])
    return out


CASE_HEADERS = ["case"] + list(OUTPUTS) + ["result"]


def bandwidth_rows(rows: Sequence[BandwidthRow]) -> List[List[str]]:
    """GB/s of ours, PyTorch's and the copy, and each kernel's share of the copy bandwidth."""
    out = []
    for r in rows:
        out.append([r.pass_name, r.dtype, f"{r.rows}x{r.hidden}", f"{r.nbytes / 1e6:.0f}",
                    f"{r.ours_ms:.3f}", f"{r.ours_gbps:.0f}", f"{r.torch_ms:.3f}", f"{r.torch_gbps:.0f}",
                    f"{r.copy_gbps:.0f}", f"{100 * r.ours_gbps / r.copy_gbps:.0f}%",
                    f"{100 * r.torch_gbps / r.copy_gbps:.0f}%"])
    return out


BANDWIDTH_HEADERS = ["pass", "dtype", "rows x hidden", "MB moved", "ours ms", "ours GB/s", "torch ms",
                     "torch GB/s", "copy GB/s", "ours/copy", "torch/copy"]


def text_report(env: Dict[str, str], results: Sequence[CaseResult], bandwidth: Sequence[BandwidthRow],
                markdown: bool = False) -> str:
    """Environment, per-dtype summary, failing cases, bandwidth table (and every case in the Markdown file)."""
    failed = [r for r in results if not r.passed]
    h = "## " if markdown else ""
    parts: List[str] = [f"{h}Environment"]
    parts += [f"- {k}: {v}" for k, v in env.items()]
    parts += ["", f"{h}Correctness: {len(results) - len(failed)} of {len(results)} cases pass "
                  "(worst |error| / tolerance per output, <= 1 passes; PyTorch's own kernels in brackets)",
              "reference: F.layer_norm + autograd in float64 (mean, 1/std directly in float64); tolerance per "
              "element: eps_o*|ref| + tiny_o + A, the rule in external_ops/gpu_check/tolerance.py",
              format_table(SUMMARY_HEADERS, summary_rows(results), markdown)]
    if failed:
        parts += ["", f"{h}Failing cases", format_table(CASE_HEADERS, case_rows(failed), markdown)]
    if bandwidth:
        parts += ["", f"{h}Bandwidth (minimal bytes moved / median CUDA-event time)",
                  format_table(BANDWIDTH_HEADERS, bandwidth_rows(bandwidth), markdown)]
    if markdown and results:
        parts += ["", f"{h}Every case", format_table(CASE_HEADERS, case_rows(results), markdown)]
    return "\n".join(parts) + "\n"


def json_report(env: Dict[str, str], results: Sequence[CaseResult],
                bandwidth: Sequence[BandwidthRow]) -> Dict[str, Any]:
    """Everything, machine-readable: environment, every case with every output's check, the bandwidth rows."""
    def case_entry(r: CaseResult) -> Dict[str, Any]:
        return {"case": asdict(r.case), "label": r.case.label, "passed": r.passed, "error": r.error,
                "seconds": r.seconds, "ours": {k: asdict(v) for k, v in r.ours.items()},
                "torch": {k: asdict(v) for k, v in r.torch.items()}}

    def bw_entry(r: BandwidthRow) -> Dict[str, Any]:
        return dict(asdict(r), bytes=r.nbytes, ours_gbps=r.ours_gbps, torch_gbps=r.torch_gbps,
                    copy_gbps=r.copy_gbps)

    return {"environment": env, "passed": all(r.passed for r in results),
            "cases": [case_entry(r) for r in results], "bandwidth": [bw_entry(r) for r in bandwidth]}


def _finite(value: Any) -> Any:
    """nan and inf as the strings "nan", "inf", so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


OUT_SUFFIXES: Tuple[str, ...] = (".json", ".md")


def render(path: str, env: Dict[str, str], results: Sequence[CaseResult], bandwidth: Sequence[BandwidthRow]) -> str:
    """The file contents for `path`, by its suffix (.json or .md)."""
    if path.endswith(".json"):
        return json.dumps(_finite(json_report(env, results, bandwidth)), indent=1, allow_nan=False) + "\n"
    if path.endswith(".md"):
        return text_report(env, results, bandwidth, markdown=True)
    raise ValueError(f"--out must end in one of {OUT_SUFFIXES}, got {path!r}")
