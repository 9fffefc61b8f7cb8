"""What a head does, read from its weights alone: composition scores, copying scores, and its OV and
QK circuits as token tables. Definitions in docs/lab.md ("Heads explained").

Composition scores follow TransformerLens on the raw weights. Every matrix here is a product of thin
factors, `A @ B` with A (C, D) and B (D, C), so no C × C matrix is formed: with QR factors A = Q_A R_A
and Bᵀ = Q_B R_B, ‖A B‖_F = ‖R_A R_Bᵀ‖_F, and a sender's `W_OV` times a receiver's matrix has the norm
of (R_A W_O)(A_r R_Brᵀ), a D × D product of a (D, C) and a (C, D) factor.
"""

from dataclasses import dataclass

import torch

from .common import UnknownModeError, cached, check_head, head_weights, known_tokens

MODES = ("q", "k", "v")


def _mode(mode) -> str:
    name = mode.lower() if isinstance(mode, str) else None
    if name not in MODES:
        raise UnknownModeError(f"unknown composition mode {mode!r}: use q, k or v")
    return name


def _r(factor: torch.Tensor) -> torch.Tensor:
    """R (..., D, D) of the QR factorization of `factor` (..., C, D), in float64."""
    return torch.linalg.qr(factor.double(), mode="r").R


def _receiver_factor(weights: dict, mode: str) -> torch.Tensor:
    """(L, H, C, D): T = A R_Bᵀ for the receiver's matrix A B of `mode`, so that ‖M A B‖_F = ‖M T‖_F."""
    A, Bt = {
        "q": (weights["W_Q"], weights["W_K"]),  # W_QK = W_Q W_Kᵀ
        "k": (weights["W_K"], weights["W_Q"]),  # W_QKᵀ = W_K W_Qᵀ
        "v": (weights["W_V"], weights["W_O"].transpose(-1, -2)),  # W_OV = W_V W_O
    }[mode]
    return A.double() @ _r(Bt).transpose(-1, -2)


def _compute_composition(model, mode: str) -> torch.Tensor:
    weights = head_weights(model)
    L, H, C, D = weights["W_Q"].shape
    sender = _r(weights["W_V"]) @ weights["W_O"].double()  # (L, H, D, C): ‖S‖_F = ‖W_OV‖_F
    receiver = _receiver_factor(weights, mode)  # (L, H, C, D)
    sender_norm = sender.flatten(-2).norm(dim=-1)  # (L, H)
    receiver_norm = receiver.flatten(-2).norm(dim=-1)
    out = torch.zeros(L, H, L, H)
    S = sender.float()
    T = receiver.float().permute(2, 0, 1, 3)  # (C, L, H, D)
    for l1 in range(L - 1):
        later = T[:, l1 + 1 :].reshape(C, -1)  # (C, L' H D)
        product = (S[l1].reshape(H * D, C) @ later).view(H, D, L - 1 - l1, H, D)
        out[l1, :, l1 + 1 :] = product.double().square().sum(dim=(1, 4)).sqrt().float()
    denominator = sender_norm[:, :, None, None] * receiver_norm[None, None]
    return (out.double() / denominator.clamp_min(1e-30)).float().cpu()


def composition_scores(model, mode: str) -> torch.Tensor:
    """(L, H, L, H) composition scores of every sender head (first two axes) into every receiver head
    (last two), mode "q", "k" or "v" (either case); 0 where the receiver's layer is not later than
    the sender's. TransformerLens's definition on the raw weights (docs/lab.md). Cached per model
    (`gpt2.heads.forget` drops it)."""
    mode = _mode(mode)
    return cached(model, ("composition", mode), lambda: _compute_composition(model, mode))


def _compute_copying(model) -> torch.Tensor:
    weights = head_weights(model)
    W_E = model.wte.weight.detach()  # (V, C)
    W_U = model.lm_head.weight.detach()  # (V, C): logits = x @ W_Uᵀ
    gram = (W_U.float().T @ W_E.float()).double()  # (C, C) = W_U W_E in row-vector convention
    # the nonzero eigenvalues of W_E W_V W_O W_U are those of W_O W_U W_E W_V, (D, D)
    core = weights["W_O"].double() @ gram @ weights["W_V"].double()  # (L, H, D, D)
    eigenvalues = torch.linalg.eigvals(core)  # (L, H, D), complex
    total = eigenvalues.abs().sum(-1)
    return (eigenvalues.real.sum(-1) / total.clamp_min(1e-30)).float().cpu()


def copying_scores(model) -> torch.Tensor:
    """(L, H): Σ Re λ / Σ |λ| over the eigenvalues λ of each head's full OV circuit W_E W_OV W_U,
    in [-1, 1] (docs/lab.md). Cached per model."""
    return cached(model, ("copying",), lambda: _compute_copying(model))


@dataclass
class TokenTable:
    """The top tokens of one head's circuit for each token asked about."""

    layer: int
    head: int
    circuit: str  # "ov": tokens written, for a source token; "qk": preferred keys, for a query token
    inputs: list[int]  # (n,) the tokens asked about
    ids: torch.Tensor  # (n, k) top tokens, best first
    values: torch.Tensor  # (n, k) their logit contributions (ov) or scaled scores (qk)

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "head": self.head,
            "circuit": self.circuit,
            "inputs": self.inputs,
            "ids": self.ids.tolist(),
            "values": self.values.tolist(),
        }


def normalized_embeddings(model, layer: int, ids=None) -> torch.Tensor:
    """(n, C) token embeddings through layer `layer`'s ln_1 on their own, without its bias β:
    (e − mean(e)) / σ(e) ⊙ γ; every token of the vocabulary when `ids` is None."""
    ln = model.blocks[layer].ln_1
    e = model.wte.weight.detach()
    e = (e if ids is None else e[torch.as_tensor(ids, dtype=torch.long, device=e.device)]).float()
    centered = e - e.mean(-1, keepdim=True)
    sigma = (centered.square().mean(-1, keepdim=True) + ln.eps).sqrt()
    return centered / sigma * ln.weight.detach().float()


def _candidates(model, candidates, inputs: list[int], device) -> torch.Tensor:
    """The tokens a table ranks: `candidates`, or by default the model's known tokens and the inputs."""
    if candidates is None:
        candidates = torch.cat([known_tokens(model), torch.tensor(inputs, dtype=torch.long)]).unique()
    return torch.as_tensor(candidates, dtype=torch.long).to(device)


def _top(values: torch.Tensor, candidates: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    top = values.topk(min(k, values.size(-1)), dim=-1)  # values: (n, len(candidates))
    return candidates[top.indices].cpu(), top.values.cpu()


@torch.no_grad()
def ov_table(model, layer: int, head: int, token_ids, k: int = 10, candidates=None) -> TokenTable:
    """For each source token, the `k` tokens whose logits the head raises most when it attends to
    that token: the top of ê W_V W_O W_U, ê the token's embedding through ln_1 without β
    (`normalized_embeddings`); biases and ln_f left out. The output tokens ranked are `candidates`,
    by default the model's known tokens (`known_tokens`) and the inputs: a model trained on a small
    corpus gives the tokens it never saw meaningless, often large, scores."""
    check_head(model, layer, head)
    weights = head_weights(model)
    inputs = [int(t) for t in token_ids]
    written = normalized_embeddings(model, layer, inputs) @ weights["W_V"][layer, head].float()
    written = written @ weights["W_O"][layer, head].float()  # (n, C)
    candidates = _candidates(model, candidates, inputs, written.device)
    logits = written @ model.lm_head.weight.detach()[candidates].float().T  # (n, V')
    ids, values = _top(logits, candidates, k)
    return TokenTable(layer, head, "ov", inputs, ids, values)


@torch.no_grad()
def qk_table(model, layer: int, head: int, query_ids, k: int = 10, candidates=None) -> TokenTable:
    """For each query token, the `k` key tokens the head scores highest: the top of
    ê_q W_Q W_Kᵀ ê_kᵀ / √D over key tokens, ê as in `ov_table`; positions and biases left out.
    The key tokens ranked are `candidates`, by default as in `ov_table`."""
    check_head(model, layer, head)
    weights = head_weights(model)
    inputs = [int(t) for t in query_ids]
    D = weights["W_Q"].size(-1)
    q = normalized_embeddings(model, layer, inputs) @ weights["W_Q"][layer, head].float()  # (n, D)
    candidates = _candidates(model, candidates, inputs, q.device)
    keys = normalized_embeddings(model, layer, candidates) @ weights["W_K"][layer, head].float()  # (V', D)
    ids, values = _top(q @ keys.T / D**0.5, candidates, k)
    return TokenTable(layer, head, "qk", inputs, ids, values)
