"""Where and in what precision the project computes: the one place for the device and dtype policy.

bfloat16 pays on CUDA and on CPUs with bf16 matrix units (AMX or AVX512-BF16), where a bf16 matmul
runs several times faster than float32; elsewhere bf16 is emulated and slower. It also pays only
once the matrices are big: a narrow model's matmuls are cheap next to the rest of a pass, and its
trained heads can be sharp enough for bf16 rounding to move the attention people read. Int8
decoding pays once the weights outgrow the CPU's caches, because a decode step reads every weight
once. `bench/bench.py` measures each of these choices.
"""

from functools import cache
from pathlib import Path

import torch

# embed_dim from which activation patching runs in bf16 (where bf16 is fast) and generation uses
# int8 weights on a CPU: GPT-2 small's width
WIDE_MODEL_MIN_WIDTH = 768


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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


def autocast_dtype(choice: str, device: torch.device) -> torch.dtype | None:
    """Training's compute dtype for `--dtype auto|float32|bfloat16`; None means plain float32."""
    if choice == "float32":
        return None
    if choice == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if fast_bf16(device) else None


def causal_bf16(model) -> bool:
    """Whether activation patching, which reruns most of the model once per layer and position,
    runs in bf16: for wide models where bf16 is fast. Its scores are ratios of logit differences,
    computed clean, corrupted and patched in the same precision, so the ends stay exactly 0 and 1.
    The analysis pass and the maps people read are always float32."""
    return model.config.embed_dim >= WIDE_MODEL_MIN_WIDTH and fast_bf16(model.wte.weight.device)


def int8_kernel_available() -> bool:
    """Whether this PyTorch has FBGEMM's dynamic-quantized int8 kernel (see `gpt2.quantize`)."""
    return "fbgemm" in torch.backends.quantized.supported_engines and hasattr(torch.ops.quantized, "linear_dynamic")


def int8_decoding_pays(model) -> bool:
    """Whether generating with int8 weights would beat float32 for `model`: wide models on a CPU (where
    this PyTorch has the kernel, `int8_kernel_available`). The bundled 128-wide model decodes no
    faster with them, so it keeps float32's exact tokens."""
    return model.wte.weight.device.type == "cpu" and model.config.embed_dim >= WIDE_MODEL_MIN_WIDTH
