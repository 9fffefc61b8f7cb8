"""Direct logit attribution: each head's, each MLP's and the embeddings' share of a target logit
(docs/lab.md, "Loss, lens and attribution")."""

from dataclasses import dataclass

import torch

from ..hooks import act_name, run_with_cache
from .common import embedding_weight, ids_tensor


@dataclass
class Attribution:
    """Direct contributions to `logits[position, target]`; they sum to `logit`."""

    position: int
    target: int
    heads: torch.Tensor  # (L, H)
    mlps: torch.Tensor  # (L,)
    attn_biases: torch.Tensor  # (L,): each attention layer's output bias
    embed: float  # token + position embedding
    constant: float  # the final LayerNorm's bias through the unembedding
    logit: float  # the model's own logit

    @property
    def total(self) -> float:
        return float(self.heads.sum() + self.mlps.sum() + self.attn_biases.sum()) + self.embed + self.constant


@torch.no_grad()
def direct_attribution(model, ids, position: int, target: int) -> Attribution:
    """Each component's direct share of the target's logit at `position`: its output, centred, divided
    by the final LayerNorm's scale frozen from this run, dotted with the target's unembedding scaled
    by the LayerNorm's gain (see docs/lab.md)."""
    L = model.config.num_layers
    final_name = act_name("resid_post", L - 1)
    names = [act_name("embed"), act_name("pos_embed"), final_name]
    names += [act_name(part, layer) for part in ("z", "mlp_out") for layer in range(L)]
    _, cache = run_with_cache(model, ids_tensor(model, ids)[:, : position + 1], names, return_hidden=True)
    at = {name: t[0, position].float() for name, t in cache.items()}  # the last position's activations
    ln = model.ln_f
    final = at[final_name]
    scale = (final.var(unbiased=False) + ln.eps).sqrt()
    direction = ln.weight.float() * model.lm_head.weight[target].float()  # (C,)

    def share(c: torch.Tensor) -> torch.Tensor:  # (..., C) → (...)
        return ((c - c.mean(-1, keepdim=True)) / scale) @ direction

    heads, biases, mlps = [], [], []
    for layer, block in enumerate(model.blocks):
        proj = block.attn.c_proj
        z = at[act_name("z", layer)]  # (H, D)
        w_o = proj.weight.float().view(proj.out_features, *z.shape)  # (C, H, D): each head's columns
        heads.append(share(torch.einsum("chd,hd->hc", w_o, z)))
        biases.append(share(proj.bias.float()))
        mlps.append(share(at[act_name("mlp_out", layer)]))
    logit = float(model.unembed(final[None, None].to(embedding_weight(model)))[0, 0, target])
    return Attribution(
        position=position,
        target=target,
        heads=torch.stack(heads).cpu(),
        mlps=torch.stack(mlps).cpu(),
        attn_biases=torch.stack(biases).cpu(),
        embed=float(share(at[act_name("embed")] + at[act_name("pos_embed")])),
        constant=float(ln.bias.float() @ model.lm_head.weight[target].float()),
        logit=logit,
    )
