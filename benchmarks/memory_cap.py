"""The suite's memory budget (`memory_cap_gb`): enforced on CUDA, reported against the measured peak on CPU.

On CUDA the caching allocator is limited to the cap for the whole process, so a method that needs more ends
with torch.cuda.OutOfMemoryError, recorded as the outcome `oom`: the batch is never shrunk to make it fit.
A CPU process cannot be capped this way without killing it, so there the record only says whether the peak
resident set exceeded the cap.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.environment import cuda_index
from benchmarks.suites import Suite


def apply(suite: Suite, device: torch.device) -> bool:
    """Limit this process's CUDA memory to the suite's cap (lifting a previous run's limit when there is none);
    True when the cap is enforced."""
    if device.type != "cuda":
        return False
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = min(1.0, suite.memory_cap_gb * 2**30 / total) if suite.memory_cap_gb else 1.0
    torch.cuda.set_per_process_memory_fraction(fraction, cuda_index(device))
    return bool(suite.memory_cap_gb)


def report(suite: Suite, enforced: bool, peak_train_mb: float | None) -> dict[str, Any]:
    """The cost fields a record carries about the cap."""
    if not suite.memory_cap_gb:
        return {"memory_cap_gb": None}
    over = None if peak_train_mb is None else peak_train_mb > suite.memory_cap_gb * 1024
    return {"memory_cap_gb": suite.memory_cap_gb, "memory_cap_enforced": enforced, "over_memory_cap": over}
