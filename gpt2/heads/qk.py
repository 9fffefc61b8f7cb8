"""Why a head attends where it does: the pre-softmax score of one attention cell split exactly into
query-side × key-side parts of the residual stream (docs/lab.md, "QK attribution").

The stream entering layer `l` at a position is the sum of its parts: token and position embeddings,
every earlier head's output, every earlier attention output bias `b_O{l}`, every earlier MLP's output
(what its block adds after attention, read from the cached stream), so the parts add up to the
cached `x_l`. With ln_1's σ frozen at the real run's value, ln_1 is linear in the parts, and so are
the query and the key: the score is the sum of the (parts × parts) matrix.

Earlier heads' outputs are recomputed from the analysis's cached stream, one LayerNorm and one
attention per layer, and kept in a `HeadOutputs` the caller can hold beside the analysis (the app's
per-text cache): every later cell of the same text reuses them.
"""

from dataclasses import dataclass

import torch

from ..analysis import Analysis, analyze
from ..hooks import act_name, hooks
from .common import CellError, check_head, head_label, head_weights


class HeadOutputs:
    """Every head's output (`hook_z`, (T, H, D), float32, on the CPU) of the layers asked for, for one
    analysed text, recomputed from its residual stream on first use and kept."""

    def __init__(self, model, analysis: Analysis):
        self.model, self.analysis = model, analysis
        self.layers: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def get(self, layer: int) -> torch.Tensor:
        if layer not in self.layers:
            block, weight = self.model.blocks[layer], self.model.wte.weight
            x = self.analysis.resid[layer].to(weight.device, weight.dtype)[None]  # (1, T, C)
            kept = {}

            def keep(z, _hook):
                kept["z"] = z[0].float().cpu()

            with hooks(self.model, {act_name("z", layer): keep}):
                block.attn(block.ln_1(x))
            self.layers[layer] = kept["z"]
        return self.layers[layer]

    @property
    def nbytes(self) -> int:
        return sum(z.numel() * z.element_size() for z in self.layers.values())


@dataclass
class QKAttribution:
    """One cell's score split into parts; shares are in the score's units (scaled by 1/√D)."""

    layer: int
    head: int
    query_pos: int
    key_pos: int
    score: float  # q_i · k_j / √D
    mean_score: float  # its mean over keys 0..query_pos
    labels: list[str]  # (n,) the parts: tok, pos, L{l}H{h}, b_O{l}, MLP{l}, then bias
    query: torch.Tensor  # (n,) each query-side part's share, summed over the key side
    key: torch.Tensor  # (n,) each key-side part's share, summed over the query side
    key_contrast: torch.Tensor  # (n,) key-side share at this key minus its mean over keys 0..query_pos
    matrix: torch.Tensor  # (n, n) query part × key part

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "head": self.head,
            "query_pos": self.query_pos,
            "key_pos": self.key_pos,
            "score": self.score,
            "mean_score": self.mean_score,
            "labels": self.labels,
            "query": self.query.tolist(),
            "key": self.key.tolist(),
            "key_contrast": self.key_contrast.tolist(),
            "matrix": self.matrix.tolist(),
        }


def part_labels(layer: int, num_heads: int) -> list[str]:
    labels = ["tok", "pos"]
    for earlier in range(layer):
        labels += [head_label(earlier, h) for h in range(num_heads)] + [f"b_O{earlier}", f"MLP{earlier}"]
    return labels + ["bias"]


def check_cell(model, T: int, layer: int, head: int, query: int, key: int) -> None:
    check_head(model, layer, head)
    if not 0 <= query < T:
        raise CellError(f"query {query} is out of range: the text has positions 0..{T - 1}")
    if not 0 <= key < T:
        raise CellError(f"key {key} is out of range: the text has positions 0..{T - 1}")
    if key > query:
        raise CellError(f"key {key} comes after query {query}: a query sees keys 0..{query}")


def _parts(model, analysis: Analysis, outputs: HeadOutputs, layer: int, positions, along=None) -> torch.Tensor:
    """The parts of x_layer at `positions` (P of them) in `part_labels` order without the constant,
    float64: (n - 1, P, C), or with `along` (C,) their dot products with it, (n - 1, P), computed
    without holding every part at every position. The parts sum to the cached stream."""
    dtype = torch.float64 if along is None else torch.float32  # every position: float32 products
    along = None if along is None else along.float()

    def project(c):  # (..., C) → (..., C) or (...,)
        c = c.to(dtype)
        return c if along is None else c @ along

    resid = project(analysis.resid[: layer + 1, positions])  # (layer + 1, P[, C])
    ids = torch.as_tensor(analysis.ids)[positions].to(model.wte.weight.device)
    pos = torch.arange(len(analysis.ids), device=ids.device)[positions]
    parts = [project(table.weight.detach()[rows].cpu()) for table, rows in ((model.wte, ids), (model.wpe, pos))]
    for earlier in range(layer):
        z = outputs.get(earlier)[positions].to(dtype)  # (P, H, D)
        W_O = head_weights(model, earlier)["W_O"].cpu().to(dtype)  # (H, D, C)
        if along is None:
            heads = torch.einsum("phd,hdc->hpc", z, W_O)  # (H, P, C)
        else:
            heads = torch.einsum("phd,hd->hp", z, W_O @ along)  # (H, P)
        b_O = project(model.blocks[earlier].attn.c_proj.bias.detach().cpu()).expand_as(heads[0])
        mlp = resid[earlier + 1] - resid[earlier] - heads.sum(0) - b_O
        parts += [*heads, b_O, mlp]
    return torch.stack(parts).double()


def qk_attribution_from(
    model, analysis: Analysis, layer: int, head: int, query: int, key: int, outputs: HeadOutputs | None = None
) -> QKAttribution:
    """QK attribution of cell (query, key) of head (layer, head) of an analysed text; `outputs`, the
    text's `HeadOutputs`, is filled as needed and may be reused for other cells of the same text."""
    T = len(analysis.ids)
    check_cell(model, T, layer, head, query, key)
    outputs = outputs if outputs is not None else HeadOutputs(model, analysis)
    ln = model.blocks[layer].ln_1
    gamma, beta = (p.detach().cpu().double() for p in (ln.weight, ln.bias))
    w = {name: t[head].cpu().double() for name, t in head_weights(model, layer).items()}
    D = w["W_Q"].size(-1)
    x = analysis.resid[layer, : query + 1].double()  # (i + 1, C): the stream each visible key reads
    sigma = (x.var(-1, unbiased=False) + ln.eps).sqrt()  # (i + 1,) ln_1's scale, frozen

    def side(parts, s, W, b):  # (n - 1, C) parts at one position → (n, D) projected parts
        normed = (parts - parts.mean(-1, keepdim=True)) / s * gamma
        return torch.cat([normed @ W, (beta @ W + b)[None]])

    at = _parts(model, analysis, outputs, layer, [query, key])  # (n - 1, 2, C)
    q_parts = side(at[:, 0], sigma[query], w["W_Q"], w["b_Q"])  # (n, D)
    k_parts = side(at[:, 1], sigma[key], w["W_K"], w["b_K"])
    matrix = q_parts @ k_parts.T / D**0.5  # (n, n)

    # every visible key's parts against the whole query: share_b(p) = c_b(p) · ũ / σ_p
    u = gamma * (w["W_K"] @ q_parts.sum(0)) / D**0.5  # (C,)
    shares = _parts(model, analysis, outputs, layer, slice(0, query + 1), u - u.mean()) / sigma  # (n - 1, i + 1)
    constant = q_parts.sum(0) @ (beta @ w["W_K"] + w["b_K"]) / D**0.5
    key_shares = matrix.sum(0)
    contrast = torch.cat([key_shares[:-1] - shares.mean(-1), torch.zeros(1, dtype=torch.float64)])
    mean_score = shares.sum(0).mean() + constant
    return QKAttribution(
        layer=layer,
        head=head,
        query_pos=query,
        key_pos=key,
        score=matrix.sum().item(),
        mean_score=mean_score.item(),
        labels=part_labels(layer, model.config.num_heads),
        query=matrix.sum(1).float(),
        key=key_shares.float(),
        key_contrast=contrast.float(),
        matrix=matrix.float(),
    )


def qk_attribution(model, ids, layer: int, head: int, query: int, key: int) -> QKAttribution:
    """QK attribution of cell (query, key) of head (layer, head) on the token ids `ids`: one analysis
    pass, then `qk_attribution_from` (docs/lab.md)."""
    check_cell(model, len(ids), layer, head, query, key)
    return qk_attribution_from(model, analyze(model, ids), layer, head, query, key)
