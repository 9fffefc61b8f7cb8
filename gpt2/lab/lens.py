"""Per-token loss and the logit lens: the model's predictions, read at the end and after every layer
(docs/lab.md, "Loss, lens and attribution")."""

from dataclasses import dataclass

import torch

from ..analysis import Analysis, final_hidden
from .common import embedding_weight, logits_rows


@torch.no_grad()
def token_losses(model, analysis: Analysis) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss (T - 1,), entropy (T,)): loss[i] = -log p(token i + 1 | tokens 0..i); entropy[i] of the
    prediction made at position i, in nats."""
    ids = torch.tensor(analysis.ids)
    T = ids.numel()
    loss, entropy = torch.zeros(max(T - 1, 0)), torch.zeros(T)
    for rows, logits in logits_rows(model, final_hidden(model, analysis)):
        logp = logits.log_softmax(-1).cpu()
        entropy[rows] = -(logp.exp() * logp).sum(-1)
        targets = ids[rows.start + 1 : rows.stop + 1]
        loss[rows.start : rows.start + targets.numel()] = -logp[: targets.numel()].gather(1, targets[:, None])[:, 0]
    return loss, entropy


@dataclass
class LogitLens:
    top_ids: torch.Tensor  # (L + 1, T, k): row 0 reads the embeddings, row l + 1 the stream after block l
    top_probs: torch.Tensor  # (L + 1, T, k)


@torch.no_grad()
def logit_lens(model, analysis: Analysis, k: int = 5) -> LogitLens:
    """The top `k` tokens and their probabilities read from the residual stream at every layer and
    position, through the final LayerNorm (its mean and scale taken from that stream) and the
    unembedding. The last row is the model's own prediction."""
    streams = analysis.resid.flatten(0, 1)  # ((L + 1) * T, C)
    top_ids = torch.empty(streams.size(0), k, dtype=torch.long)
    top_probs = torch.empty(streams.size(0), k)
    for rows, logits in logits_rows(model, model.ln_f(streams.to(embedding_weight(model)))):
        values, ids = logits.topk(k, dim=-1)
        top_probs[rows] = (values - logits.logsumexp(-1, keepdim=True)).exp().cpu()
        top_ids[rows] = ids.cpu()
    shape = (analysis.num_layers + 1, len(analysis.ids), k)
    return LogitLens(top_ids.view(shape), top_probs.view(shape))


@torch.no_grad()
def lens_ranks(model, analysis: Analysis, position: int, target: int) -> torch.Tensor:
    """(L + 1,) rank of `target` (0 = the top token) at `position`, at every layer of the logit lens."""
    hidden = model.ln_f(analysis.resid[:, position].to(embedding_weight(model)))  # (L + 1, C)
    logits = (hidden @ model.lm_head.weight.T).float()
    return (logits > logits[:, target : target + 1]).sum(-1).cpu()
