"""Int8 weights for fast decoding on a CPU: `quantize_int8(model)` returns a copy to generate with.

A decode step turns one token into the next by reading every weight matrix once, so its speed is
set by bytes read over memory bandwidth. Here each Linear weight (and the tied LM head) is stored
as int8 with one scale per output row, a quarter of float32's bytes, and multiplied by FBGEMM's
dynamic-quantized kernel (activations quantized per call, int8 dot products, float32 output),
which streams the int8 weights at close to memory speed. Attention, the KV cache, the LayerNorms
and the embeddings stay float32, and so do the hooks.

The kernel comes from PyTorch's `quantized` ops, which PyTorch has deprecated in favour of torchao;
`requirements.txt` pins a PyTorch that has them, and `gpt2.precision.int8_kernel_available()` says
whether this one does (and `int8_decoding_pays(model)` whether a model gains from them).
"""

import copy
import warnings

import torch
from torch import nn

from .model import GPT2
from .precision import int8_kernel_available


class Int8Linear(nn.Module):
    """`y = x @ W.T + b` with W stored as int8 rows times a per-row scale (symmetric, round to nearest)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        weight = weight.detach().float().cpu().contiguous()  # (out_features, in_features)
        scales = weight.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        zero_points = torch.zeros(weight.size(0), dtype=torch.long)
        with warnings.catch_warnings():  # the deprecation notice of quantized tensors (see the module docstring)
            warnings.simplefilter("ignore", UserWarning)
            int8 = torch.quantize_per_channel(weight, scales.double(), zero_points, 0, torch.qint8)
        self.out_features, self.in_features = weight.shape
        self._packed = torch.ops.quantized.linear_prepack(int8, None if bias is None else bias.detach().float().cpu())

    def dequantized(self) -> torch.Tensor:
        """The int8 weight times its scales, as float32 (out_features, in_features)."""
        int8, _ = torch.ops.quantized.linear_unpack(self._packed)
        return int8.dequantize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        y = torch.ops.quantized.linear_dynamic(rows, self._packed, False)  # (N, out_features) float32
        return y.to(x.dtype).view(*x.shape[:-1], self.out_features)


def quantize_int8(model: GPT2) -> GPT2:
    """A copy of a float32 `model` whose Linear layers and LM head are `Int8Linear`, for generation
    only (training and the chunked loss need the float weights). The copy shares the float tensors it
    keeps (embeddings, LayerNorms) with the original, which is left as it is."""
    if not int8_kernel_available():
        raise RuntimeError(f"this PyTorch ({torch.__version__}) has no FBGEMM int8 kernel (torch.ops.quantized)")
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
