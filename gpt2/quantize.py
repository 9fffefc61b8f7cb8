"""Int8 weights for fast decoding on a CPU: `quantize_int8(model)` returns a copy to generate with,
checked on the machine it runs on.

A decode step turns one token into the next by reading every weight matrix once, so its speed is
set by bytes read over memory bandwidth. Here each Linear weight (and the tied LM head) is stored
as int8 with one scale per output row, a quarter of float32's bytes, and multiplied by FBGEMM's
dynamic-quantized kernel (the activation row quantized per call, int8 dot products, float32
output). Attention, the KV cache, the LayerNorms and the embeddings stay float32, and so do the
hooks. A call with more than `MAX_INT8_ROWS` rows (a prompt) multiplies the float32 weights instead:
it is compute-bound, so int8 would gain nothing, and one activation scale for many rows loses
precision.

Whether int8 is accurate depends on the CPU. With VNNI (AVX512-VNNI, AVX-VNNI, AMX) FBGEMM adds
int8 products in 32 bits; without it (plain AVX2 or AVX-512) its 8-bit multiply-add saturates in
16 bits unless the activations use 7 bits, and GPT-2's few large activation features then wreck
the result. So `quantize_int8` tries 8-bit activations, then 7-bit ones, and keeps the first that
passes a calibration check (see `decoding_agreement`): stepping a fixed text through the KV cache, the
copy's next-token distributions must match float32's. If neither passes, the copy keeps float32
weights and says so. Its `decoding` attribute (a `DecodingCheck`) tells which path it took.

On ARM, PyTorch ships no FBGEMM: `gpt2.precision.int8_kernel_available()` is false there and the app
decodes in float32. The kernel comes from PyTorch's `quantized` ops, which PyTorch has deprecated in
favour of torchao; `requirements.txt` pins a PyTorch that has them.
"""

import copy
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .model import GPT2
from .precision import int8_kernel_available
from .tokenizer import get_tokenizer

MAX_INT8_ROWS = 8  # more rows than this in one call (a prompt) multiply in float32
ACTIVATION_BITS = (8, 7)  # tried in this order; 7 bits cannot saturate FBGEMM's AVX2 kernels
# the calibration bounds: mean KL(float32 ‖ int8) of the next-token distributions, and the share of
# decided positions (float32's top token ahead by NEAR_TIE_NATS or more) where the top tokens agree
MAX_MEAN_KL = 1e-2
MIN_TOP1_AGREEMENT = 0.97
NEAR_TIE_NATS = 0.5
# the calibration text, stepped one token at a time: plain English and Shakespeare (public domain)
CALIBRATION_TEXT = (
    "Shall I compare thee to a summer's day? Thou art more lovely and more temperate: rough winds do "
    "shake the darling buds of May, and summer's lease hath all too short a date.\n\n"
    "ROMEO:\nBut soft, what light through yonder window breaks? It is the east, and Juliet is the sun.\n\n"
    "The museum opened its doors in the spring of that year, and by the end of the first week more than "
    "ten thousand people had come to see the paintings, the letters and the old maps of the city."
)


class Int8Linear(nn.Module):
    """`y = x @ W.T + b` with W stored as int8 rows times a per-row scale (symmetric, round to nearest).

    Calls of up to MAX_INT8_ROWS rows use the int8 kernel with `activation_bits` (8 or 7) per
    activation; larger calls use `weight`, the float32 weight, which is shared, not copied."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, activation_bits: int = 8) -> None:
        super().__init__()
        if activation_bits not in ACTIVATION_BITS:
            raise ValueError(f"activation_bits must be one of {ACTIVATION_BITS}, not {activation_bits}")
        self.weight = weight.detach()  # (out_features, in_features) float32, shared with the float model
        self.bias = None if bias is None else bias.detach()
        self.out_features, self.in_features = weight.shape
        self.activation_bits = activation_bits
        scales = self.weight.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        zero_points = torch.zeros(self.out_features, dtype=torch.long)
        with warnings.catch_warnings():  # the deprecation notice of quantized tensors (see the module docstring)
            warnings.simplefilter("ignore", UserWarning)
            int8 = torch.quantize_per_channel(self.weight.float().cpu(), scales.double(), zero_points, 0, torch.qint8)
        self._packed = torch.ops.quantized.linear_prepack(int8, None if bias is None else self.bias.float().cpu())

    def dequantized(self) -> torch.Tensor:
        """The int8 weight times its scales, as float32 (out_features, in_features)."""
        int8, _ = torch.ops.quantized.linear_unpack(self._packed)
        return int8.dequantize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()  # (N, in_features)
        if rows.size(0) > MAX_INT8_ROWS:
            y = F.linear(rows, self.weight, self.bias)
        else:  # reduce_range: quantize the activations to 7 bits
            y = torch.ops.quantized.linear_dynamic(rows, self._packed, self.activation_bits == 7)
        return y.to(x.dtype).view(*x.shape[:-1], self.out_features)


@dataclass(frozen=True)
class DecodingCheck:
    """How a fast-decoding copy decodes, and how close it came to float32 on the calibration text."""

    activation_bits: int | None  # 8 or 7 for int8, None for float32 weights (int8 was not accurate)
    mean_kl: float  # of the int8 setting kept, or of the best one tried when none passed
    top1_agreement: float

    @property
    def summary(self) -> str:
        """What a status line says, e.g. "int8, 7-bit activations"."""
        if self.activation_bits == 8:
            return "int8"
        if self.activation_bits == 7:
            return "int8, 7-bit activations"
        return (
            f"not used: this CPU's int8 was not accurate (KL {self.mean_kl:.3g}, "
            f"top-1 agreement {self.top1_agreement:.0%}), so float32"
        )


@torch.inference_mode()
def decoding_agreement(
    reference: GPT2, model: GPT2, ids: torch.Tensor, near_tie_nats: float = NEAR_TIE_NATS
) -> tuple[float, float]:
    """(mean KL(reference ‖ model) in nats, top-1 agreement) of the next-token distributions at every
    position of `ids` (1, T): `reference` runs the text in one pass, `model` steps through it one
    token at a time with its KV cache, as a decoding model does. The agreement counts the positions
    where the reference's top token leads by `near_tie_nats` or more (0: every position)."""
    expected = reference(ids)[0].float().log_softmax(-1)  # (T, V)
    cache = model.new_kv_cache(1, ids.size(1))
    got = torch.cat([model(ids[:, t : t + 1], cache)[0] for t in range(ids.size(1))]).float().log_softmax(-1)
    mean_kl = F.kl_div(got, expected, log_target=True, reduction="batchmean").item()
    top2 = expected.topk(2, dim=-1).values  # (T, 2)
    decided = (top2[:, 0] - top2[:, 1]) >= near_tie_nats
    agree = expected.argmax(-1) == got.argmax(-1)
    top1 = agree[decided].float().mean().item() if decided.any() else 1.0
    return mean_kl, top1


def calibration_ids(model: GPT2, length: int = 96) -> torch.Tensor:
    """The calibration text's first `length` tokens (1, T), within the model's vocabulary and context."""
    ids = get_tokenizer().encode(CALIBRATION_TEXT)[: min(length, model.config.block_size)]
    return torch.tensor([ids], device=model.wte.weight.device) % model.config.vocab_size


def _copy(model: GPT2, make=None) -> GPT2:
    """An eval-mode copy of `model` sharing every float tensor with it (`model` is left as it is);
    with `make`, its Linear layers and LM head become `make(weight, bias)`."""
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}  # deepcopy reuses these as they are
    result = copy.deepcopy(model, memo=shared).eval()
    if make is None:
        return result
    for block in result.blocks:
        for parent, name in (
            (block.attn, "c_attn"),
            (block.attn, "c_proj"),
            (block.mlp, "c_fc"),
            (block.mlp, "c_proj"),
        ):
            linear = getattr(parent, name)
            setattr(parent, name, make(linear.weight, linear.bias))
    # the head is tied to the token embedding: the embedding lookup keeps the float rows (it reads one
    # row per token), the head reads all 50,257 rows every step and gets the int8 copy
    result.lm_head = make(result.wte.weight, None)
    return result


def quantize_int8(model: GPT2, activation_bits=ACTIVATION_BITS, check=None) -> GPT2:
    """A copy of a float32 `model` to generate with (not to train), whose Linear layers and LM head
    are `Int8Linear` with the first of `activation_bits` that passes the calibration check, or a plain
    float32 copy if none does. Its `decoding` attribute is the `DecodingCheck`.

    `check(reference, candidate) -> (mean_kl, top1_agreement)` defaults to `decoding_agreement` on
    the calibration text; the bounds are MAX_MEAN_KL and MIN_TOP1_AGREEMENT (docs/precision.md)."""
    if not int8_kernel_available():
        raise RuntimeError(f"this PyTorch ({torch.__version__}) has no FBGEMM int8 kernel (torch.ops.quantized)")
    if model.wte.weight.dtype != torch.float32:
        raise ValueError(f"quantize a float32 model, not {model.wte.weight.dtype}")
    reference = _copy(model)
    if check is None:
        ids = calibration_ids(reference)
        check = lambda reference, candidate: decoding_agreement(reference, candidate, ids)  # noqa: E731
    best = (float("inf"), 0.0)  # (mean KL, top-1 agreement) of the closest setting tried
    for bits in activation_bits:
        candidate = _copy(model, lambda weight, bias, bits=bits: Int8Linear(weight, bias, bits))
        mean_kl, top1 = check(reference, candidate)
        if mean_kl <= MAX_MEAN_KL and top1 >= MIN_TOP1_AGREEMENT:
            candidate.decoding = DecodingCheck(bits, mean_kl, top1)
            return candidate
        best = min(best, (mean_kl, top1))
    reference.decoding = DecodingCheck(None, *best)
    return reference
