"""Records of what was checked and measured, plain data so the report can be formatted and tested without torch."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional

from .cases import Case


@dataclass(frozen=True)
class OutputCheck:
    """One output of one case against the reference: worst error, worst error / tolerance, elements outside."""

    max_error: float
    worst_ratio: float  # max over elements of |got - ref| / tolerance; <= 1 passes, nan if any got is nan
    failed: int  # elements outside the tolerance (nan counts as outside)
    elements: int

    @property
    def passed(self) -> bool:
        return self.failed == 0 and not math.isnan(self.worst_ratio)


@dataclass
class CaseResult:
    """Our kernels' outputs (and, for information, PyTorch's in the case's own dtypes) against the reference.
    `error` is set when the case could not run (a launch error, an exception); such a case fails."""

    case: Case
    ours: Dict[str, OutputCheck] = field(default_factory=dict)
    torch: Dict[str, OutputCheck] = field(default_factory=dict)
    error: Optional[str] = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.ours) and all(c.passed for c in self.ours.values())
