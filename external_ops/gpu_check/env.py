"""What the check runs on: whether PyTorch sees a CUDA device, and the versions worth printing with results."""
from __future__ import annotations

import platform
from typing import Any, Dict, Optional


def cuda_device_problem(torch: Any, device: int) -> Optional[str]:
    """Why `device` cannot be used (no CUDA build of PyTorch, no visible GPU, index out of range), or None."""
    if torch.version.cuda is None:
        return f"PyTorch {torch.__version__} is a CPU-only build (install a CUDA build of torch)"
    if not torch.cuda.is_available():
        return (f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device "
                "(no GPU, no driver, or CUDA_VISIBLE_DEVICES hides them)")
    count = torch.cuda.device_count()
    if not 0 <= device < count:
        return f"device {device} requested, PyTorch sees {count} CUDA device(s)"
    return None


def _cuda_version(code: int) -> str:
    """12080 -> '12.8' (the encoding of cudaRuntimeGetVersion / cudaDriverGetVersion)."""
    return f"{code // 1000}.{code % 1000 // 10}" if code > 0 else "none"


def describe(torch: Any, lib: Any, device: int, build_info: str) -> Dict[str, str]:
    """GPU, driver, CUDA and PyTorch versions, and how the library was built."""
    props = torch.cuda.get_device_properties(device)
    return {
        "gpu": f"{props.name} (sm_{props.major}{props.minor}, {props.total_memory / 2 ** 30:.0f} GiB, "
               f"{props.multi_processor_count} SMs)",
        "driver supports CUDA": _cuda_version(lib.driver_version()),
        "kernels' CUDA runtime": _cuda_version(lib.runtime_version()) + " (static, in the check's library)",
        "torch": f"{torch.__version__} (CUDA {torch.version.cuda})",
        "python": platform.python_version(),
        "library": lib.path,
        "build": build_info or "unknown",
    }
