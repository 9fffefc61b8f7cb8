"""Where bfloat16 compute pays: CUDA, and CPUs with bf16 matrix units (AMX or AVX512-BF16), where a
bf16 matmul runs several times faster than float32. Elsewhere bf16 is emulated and slower."""

from functools import cache
from pathlib import Path

import torch


@cache
def _cpu_has_bf16_units() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matmuls beat float32 on this device."""
    return device.type == "cuda" or (device.type == "cpu" and _cpu_has_bf16_units())
