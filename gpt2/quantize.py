"""Weight-only int8 for fast decoding on a CPU: `quantize_int8(model)` returns a copy to generate with.

A decode step turns one token into the next by reading every weight matrix once, so its speed is
set by bytes read over memory bandwidth. Here each Linear weight (and the tied LM head) is stored
as int8 with one scale per output row, a quarter of float32's bytes, and a decode step multiplies
bfloat16 activations by it directly with torch's int8-weight kernel. Prompts (many rows at once),
where that kernel is slower than a float32 matmul, dequantize the weight instead. Attention, the
KV cache, LayerNorms and the embeddings stay float32, and so do the hooks.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .model import GPT2

DECODE_ROWS = 8  # up to this many rows per call use the int8 kernel; more rows dequantize


def int8_kernel_available() -> bool:
    return hasattr(torch, "_weight_int8pack_mm")


class Int8Linear(nn.Module):
    """`y = x @ W.T + b` with W stored as int8 rows times a per-row scale (symmetric, round to nearest)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        weight = weight.detach().float()  # (out_features, in_features)
        scales = weight.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        int8 = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
        self.register_buffer("weight_int8", int8)
        self.register_buffer("scales", scales)
        self.register_buffer("scales_bf16", scales.to(torch.bfloat16))
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @property
    def out_features(self) -> int:
        return self.weight_int8.size(0)

    def dequantized(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.weight_int8.to(dtype) * self.scales.to(dtype)[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.size(-1))  # (N, in_features)
        if rows.size(0) <= DECODE_ROWS:
            y = torch._weight_int8pack_mm(rows.to(torch.bfloat16), self.weight_int8, self.scales_bf16).to(x.dtype)
            if self.bias is not None:
                y = y + self.bias.to(x.dtype)
        else:
            bias = None if self.bias is None else self.bias.to(x.dtype)
            y = F.linear(rows, self.dequantized(x.dtype), bias)
        return y.view(*x.shape[:-1], self.out_features)


def quantize_int8(model: GPT2) -> GPT2:
    """A copy of a float32 `model` whose Linear layers and LM head are `Int8Linear`, for generation
    only (training and the chunked loss need the float weights). The copy shares the float tensors it
    keeps (embeddings, LayerNorms) with the original, which is left as it is."""
    if not int8_kernel_available():
        raise RuntimeError(f"this PyTorch ({torch.__version__}) has no int8 weight kernel (torch._weight_int8pack_mm)")
    if model.wte.weight.dtype != torch.float32:
        raise ValueError(f"quantize a float32 model, not {model.wte.weight.dtype}")
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}  # deepcopy reuses these as they are
    quantized = copy.deepcopy(model, memo=shared).eval()
    for block in quantized.blocks:
        for parent, name in (
            (block.attn, "c_attn"),
            (block.attn, "c_proj"),
            (block.mlp, "c_fc"),
            (block.mlp, "c_proj"),
        ):
            linear = getattr(parent, name)
            setattr(parent, name, Int8Linear(linear.weight, linear.bias))
    # the head is tied to the token embedding: the embedding lookup keeps the float rows (it reads one
    # row per token), the head reads all 50,257 rows every step and gets the int8 copy
    quantized.lm_head = Int8Linear(quantized.wte.weight)
    return quantized
