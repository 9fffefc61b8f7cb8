"""The causal tools: what heads do, not only where they look. Quantities as `docs/lab.md` defines them.

- `token_losses`: each actual next token's loss, and each prediction's entropy;
- `logit_lens`: the top tokens read from the residual stream after the embeddings and each block;
- `direct_attribution`: each head's, each MLP's and the embeddings' direct share of a target logit;
- `Ablation` / `ablation_hooks` / `ablated_analysis`: zero or mean-ablate heads and rerun;
- `ablation_sweep`: each head alone mean-ablated, the change in the target's log-probability;
- `patch`: activation patching from a clean prompt into a corrupted one, per (layer, position) of the
  residual stream and per head.

Interventions rerun from the first layer they touch, from the cached residual stream, and only the
positions they can change: attention is causal, so a change at position p leaves every earlier
position alone, and those keys and values come from a cache of the unchanged run.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .analysis import Analysis, analyze, final_hidden
from .hooks import hooks, run_with_cache
from .precision import causal_bf16

Progress = Callable[[float], None] | None
ROW_CHUNK = 128  # positions whose logits over the vocabulary are made at a time


class LabError(ValueError):
    """A causal-tool request that cannot be answered (the message says why, in one line)."""


def _weight(model) -> torch.Tensor:
    return model.wte.weight


def _ids_tensor(model, ids) -> torch.Tensor:
    return torch.as_tensor(ids, dtype=torch.long, device=_weight(model).device).reshape(1, -1)


def _logits_rows(model, hidden: torch.Tensor):
    """Yield (rows, logits (n, V) in float32) of the LM head over `hidden` (N, C), a chunk at a time."""
    weight_t = model.lm_head.weight.T.contiguous()  # (C, V): the layout this matmul reads fastest
    for start in range(0, hidden.size(0), ROW_CHUNK):
        rows = slice(start, min(start + ROW_CHUNK, hidden.size(0)))
        yield rows, (hidden[rows].to(weight_t.dtype) @ weight_t).float()


# ---- per-token loss ------------------------------------------------------------------------------


@torch.no_grad()
def token_losses(model, analysis: Analysis) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss (T - 1,), entropy (T,)): loss[i] = -log p(token i + 1 | tokens 0..i); entropy[i] of the
    prediction made at position i, in nats."""
    ids = torch.tensor(analysis.ids)
    T = ids.numel()
    loss, entropy = torch.zeros(max(T - 1, 0)), torch.zeros(T)
    for rows, logits in _logits_rows(model, final_hidden(model, analysis)):
        logp = logits.log_softmax(-1).cpu()
        entropy[rows] = -(logp.exp() * logp).sum(-1)
        targets = ids[rows.start + 1 : rows.stop + 1]
        loss[rows.start : rows.start + targets.numel()] = -logp[: targets.numel()].gather(1, targets[:, None])[:, 0]
    return loss, entropy


# ---- logit lens ----------------------------------------------------------------------------------


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
    for rows, logits in _logits_rows(model, model.ln_f(streams.to(_weight(model)))):
        values, ids = logits.topk(k, dim=-1)
        top_probs[rows] = (values - logits.logsumexp(-1, keepdim=True)).exp().cpu()
        top_ids[rows] = ids.cpu()
    shape = (analysis.num_layers + 1, len(analysis.ids), k)
    return LogitLens(top_ids.view(shape), top_probs.view(shape))


@torch.no_grad()
def lens_ranks(model, analysis: Analysis, position: int, target: int) -> torch.Tensor:
    """(L + 1,) rank of `target` (0 = the top token) at `position`, at every layer of the logit lens."""
    hidden = model.ln_f(analysis.resid[:, position].to(_weight(model)))  # (L + 1, C)
    logits = (hidden @ model.lm_head.weight.T).float()
    return (logits > logits[:, target : target + 1]).sum(-1).cpu()


# ---- direct logit attribution --------------------------------------------------------------------


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
    names = ["hook_embed", "hook_pos_embed", f"blocks.{L - 1}.hook_resid_post"]
    names += [f"blocks.{layer}.attn.hook_z" for layer in range(L)] + [
        f"blocks.{layer}.hook_mlp_out" for layer in range(L)
    ]
    _, cache = run_with_cache(model, _ids_tensor(model, ids)[:, : position + 1], names, return_hidden=True)
    at = {name: t[0, position].float() for name, t in cache.items()}  # the last position's activations
    ln = model.ln_f
    final = at[f"blocks.{L - 1}.hook_resid_post"]
    scale = (final.var(unbiased=False) + ln.eps).sqrt()
    direction = ln.weight.float() * model.lm_head.weight[target].float()  # (C,)

    def share(c: torch.Tensor) -> torch.Tensor:  # (..., C) → (...)
        return ((c - c.mean(-1, keepdim=True)) / scale) @ direction

    heads, biases, mlps = [], [], []
    for layer, block in enumerate(model.blocks):
        proj = block.attn.c_proj
        z = at[f"blocks.{layer}.attn.hook_z"]  # (H, D)
        w_o = proj.weight.float().view(proj.out_features, *z.shape)  # (C, H, D): each head's columns
        heads.append(share(torch.einsum("chd,hd->hc", w_o, z)))
        biases.append(share(proj.bias.float()))
        mlps.append(share(at[f"blocks.{layer}.hook_mlp_out"]))
    logit = float(model.unembed(final[None, None].to(_weight(model)))[0, 0, target])
    return Attribution(
        position=position,
        target=target,
        heads=torch.stack(heads).cpu(),
        mlps=torch.stack(mlps).cpu(),
        attn_biases=torch.stack(biases).cpu(),
        embed=float(share(at["hook_embed"] + at["hook_pos_embed"])),
        constant=float(ln.bias.float() @ model.lm_head.weight[target].float()),
        logit=logit,
    )


# ---- ablation ------------------------------------------------------------------------------------

HEAD_SPEC = re.compile(r"^L(\d+)(?:H(\d+))?$", re.IGNORECASE)


def parse_heads(text: str, num_layers: int, num_heads: int) -> tuple[tuple[int, int], ...]:
    """`"L0H0, L1H2"` or `"L1"` (every head of layer 1) → sorted (layer, head) pairs."""
    heads = set()
    for part in str(text).replace(";", ",").split(","):
        typed = part.strip()
        if not typed:
            continue
        match = HEAD_SPEC.match(typed.replace(" ", ""))  # "L1 H2" is L1H2
        if not match:
            raise LabError(f"not a head or layer: {typed[:20]!r} (write heads like L0H0, L1H2, or L1 for a layer)")
        layer = int(match.group(1))
        if layer >= num_layers:
            raise LabError(f"layer {layer} does not exist: the model has layers 0 to {num_layers - 1}")
        if match.group(2) is None:
            heads.update((layer, h) for h in range(num_heads))
            continue
        head = int(match.group(2))
        if head >= num_heads:
            raise LabError(f"head {head} does not exist: layers have heads 0 to {num_heads - 1}")
        heads.add((layer, head))
    if not heads:
        raise LabError("name at least one head to ablate, e.g. L0H0 or L1")
    return tuple(sorted(heads))


ABLATION_MODES = ("zero", "mean")


@dataclass(frozen=True)
class Ablation:
    """Heads to ablate: `zero` sets their `hook_z` to 0, `mean` to its mean over this text's positions."""

    heads: tuple[tuple[int, int], ...]
    mode: str = "zero"

    def __post_init__(self):
        if self.mode not in ABLATION_MODES:
            raise LabError(f"unknown ablation mode {str(self.mode)[:20]!r}: use zero or mean")

    @property
    def label(self) -> str:
        return f"{self.mode}-ablated " + ", ".join(f"L{layer}H{head}" for layer, head in self.heads)

    @property
    def first_layer(self) -> int:
        return min(layer for layer, _ in self.heads)


@torch.no_grad()
def mean_z(model, ids, layers) -> dict[int, torch.Tensor]:
    """Each head's output (hook_z) averaged over this text's positions in a clean run, (H, D) by layer."""
    names = [f"blocks.{layer}.attn.hook_z" for layer in layers]
    _, cache = run_with_cache(model, _ids_tensor(model, ids), names, return_hidden=True)
    return {layer: cache[f"blocks.{layer}.attn.hook_z"][0].mean(0) for layer in layers}


def ablation_hooks(model, ids, ablation: Ablation) -> dict:
    """`{hook name: fn}` that apply `ablation` (to every row of a batch)."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in ablation.heads:
        by_layer.setdefault(layer, []).append(head)
    means = mean_z(model, ids, list(by_layer)) if ablation.mode == "mean" else {}

    def replace(layer: int, heads: list[int]):
        def hook(z, _hook):  # (B, T, H, D)
            z = z.clone()
            z[:, :, heads] = means[layer][heads].to(z.dtype) if ablation.mode == "mean" else 0.0
            return z

        return hook

    return {f"blocks.{layer}.attn.hook_z": replace(layer, heads) for layer, heads in by_layer.items()}


def ablated_analysis(model, ids, ablation: Ablation) -> Analysis:
    """The analysis of `ids` with `ablation` applied: scores, thumbnails and the residual stream of the
    ablated run, so every downstream head's maps are recomputed under it."""
    return analyze(model, ids, fwd_hooks=ablation_hooks(model, ids, ablation))


@torch.no_grad()
def ablation_sweep(model, analysis: Analysis, position: int, target: int, progress: Progress = None) -> torch.Tensor:
    """(L, H): log p(target) at `position` with that head alone mean-ablated, minus the clean run's.
    The heads of one layer run as one batch, from the cached stream entering that layer; only
    positions 0..position matter (attention is causal)."""
    ids = analysis.ids[: position + 1]
    L, H = analysis.num_layers, analysis.num_heads
    means = mean_z(model, ids, range(L))
    clean = _target_logprob(model, analysis.resid[-1, position][None, None], target)
    effects = torch.zeros(L, H)
    for layer in range(L):
        x = analysis.resid[layer, : position + 1].to(_weight(model)).expand(H, -1, -1)  # (H, T', C)

        def one_head_each(z, _hook, layer=layer):  # row h of the batch ablates head h
            z = z.clone()
            heads = torch.arange(H)
            z[heads, :, heads] = means[layer].to(z.dtype)[:, None, :]  # (H, T', D) ← (H, 1, D)
            return z

        with hooks(model, {f"blocks.{layer}.attn.hook_z": one_head_each}):
            final = model.run_blocks(x, layer)[:, -1:]
        effects[layer] = _target_logprob(model, final, target) - clean
        if progress:
            progress((layer + 1) / L)
    return effects


def _target_logprob(model, final: torch.Tensor, target: int) -> torch.Tensor:
    """log p(target) (B,) from the stream after the last block at one position, (B, 1, C)."""
    logits = model.unembed(final.to(_weight(model)))[:, -1].float()
    return (logits[:, target] - logits.logsumexp(-1)).cpu()


# ---- activation patching -------------------------------------------------------------------------


@dataclass
class Patching:
    """Logit difference restored by patching clean activations into the corrupted run: 0 = no effect,
    1 = the clean run's. `resid` (L, T): the stream entering each layer at one position; `heads` (L, H):
    one head's output at every position."""

    answer_clean: int
    answer_corrupted: int
    ld_clean: float
    ld_corrupted: float
    resid: torch.Tensor
    heads: torch.Tensor


class _Runs:
    """The clean and corrupted runs' residual streams, head outputs, keys and values, for reruns that
    start at any layer and position."""

    def __init__(self, model, ids):
        L = model.config.num_layers
        names = [f"blocks.{layer}.hook_resid_pre" for layer in range(L)] + [f"blocks.{L - 1}.hook_resid_post"]
        for part in ("z", "k", "v"):
            names += [f"blocks.{layer}.attn.hook_{part}" for layer in range(L)]
        _, cache = run_with_cache(model, _ids_tensor(model, ids), names, return_hidden=True)
        self.resid = torch.cat([cache[f"blocks.{layer}.hook_resid_pre"] for layer in range(L)])  # (L, T, C)
        self.final = cache[f"blocks.{L - 1}.hook_resid_post"]  # (1, T, C)
        self.z = torch.cat([cache[f"blocks.{layer}.attn.hook_z"] for layer in range(L)])  # (L, T, H, D)
        self.keys = torch.stack([cache[f"blocks.{layer}.attn.hook_k"][0].transpose(0, 1) for layer in range(L)])
        self.values = torch.stack([cache[f"blocks.{layer}.attn.hook_v"][0].transpose(0, 1) for layer in range(L)])


PATCH_BATCH = 32  # reruns batched together


class _Rerun:
    """Reruns of the corrupted run from a layer and position on. A change at position p leaves the
    earlier positions alone, so their keys and values come from the corrupted run, in a KV cache
    made once and refilled for each batch."""

    def __init__(self, model, corrupted: _Runs):
        self.model, self.corrupted = model, corrupted
        batch = max(PATCH_BATCH, model.config.num_heads)
        self.cache = model.new_kv_cache(batch, max_len=corrupted.resid.size(1))

    def last_logits(self, x: torch.Tensor, layer: int, start: int, fns=None) -> torch.Tensor:
        """Logits at the last position (B, V) for the batch `x` (B, T - start, C) of streams entering
        `layer` at positions start..T-1."""
        cache = self.cache.rows(x.size(0))
        cache.keys[layer:, :, :, :start] = self.corrupted.keys[layer:, None, :, :start]
        cache.values[layer:, :, :, :start] = self.corrupted.values[layer:, None, :, :start]
        cache.length = start
        with hooks(self.model, fns or {}):
            final = self.model.run_blocks(x, layer, kv_cache=cache)
        return self.model.unembed(final, only_last=True)[:, -1].float()


def _batches(items: list, size: int = PATCH_BATCH):
    for start in range(0, len(items), size):
        yield items[start : start + size]


@torch.no_grad()
def patch(
    model, clean_ids, corrupted_ids, answers: tuple[int, int] | None = None, progress: Progress = None
) -> Patching:
    """Activation patching from `clean_ids` into `corrupted_ids` (the same number of tokens), scored
    by the logit difference between the two answers at the last position (default: each prompt's
    top next token)."""
    if len(clean_ids) != len(corrupted_ids):
        raise LabError(
            f"the prompts must have the same number of tokens: clean has {len(clean_ids)}, corrupted {len(corrupted_ids)}"
        )
    device = _weight(model).device
    with torch.autocast(device.type, torch.bfloat16, enabled=causal_bf16(model)):
        clean, corrupted = _Runs(model, clean_ids), _Runs(model, corrupted_ids)
        clean_logits = model.unembed(clean.final, only_last=True)[0, -1].float()
        corrupted_logits = model.unembed(corrupted.final, only_last=True)[0, -1].float()
        answer_clean, answer_corrupted = answers or (int(clean_logits.argmax()), int(corrupted_logits.argmax()))
        if answer_clean == answer_corrupted:
            raise LabError("both prompts predict the same next token, so there is no logit difference to restore")

        def logit_diff(logits: torch.Tensor) -> torch.Tensor:
            return logits[..., answer_clean] - logits[..., answer_corrupted]

        ld_clean, ld_corrupted = float(logit_diff(clean_logits)), float(logit_diff(corrupted_logits))
        if abs(ld_clean - ld_corrupted) < 1e-6:
            raise LabError("the two prompts give the same logit difference: patching cannot restore anything")

        def restored(logits: torch.Tensor) -> torch.Tensor:
            return ((logit_diff(logits) - ld_corrupted) / (ld_clean - ld_corrupted)).cpu()

        rerun = _Rerun(model, corrupted)
        L, H = model.config.num_layers, model.config.num_heads
        resid, heads = torch.zeros(L, len(clean_ids)), torch.zeros(L, H)
        for layer in range(L):
            # the stream entering `layer` at one position, clean into corrupted; where both runs hold the
            # same stream there is nothing to patch and the score stays 0
            differs = (clean.resid[layer] != corrupted.resid[layer]).any(-1).nonzero().flatten().tolist()
            for positions in _batches(differs):
                start = positions[0]
                x = corrupted.resid[layer, start:].repeat(len(positions), 1, 1)  # (B, T - start, C)
                for row, p in enumerate(positions):
                    x[row, p - start] = clean.resid[layer, p]
                resid[layer, positions] = restored(rerun.last_logits(x, layer, start))
            # each head's output at every position, clean into corrupted: row h of the batch takes head h's
            z_differs = (clean.z[layer] != corrupted.z[layer]).flatten(1).any(-1).nonzero().flatten()
            if z_differs.numel():
                start = int(z_differs[0])
                clean_z = clean.z[layer, start:].transpose(0, 1)  # (H, T - start, D)

                def clean_head_each(z, _hook, clean_z=clean_z):
                    z = z.clone()
                    z[torch.arange(H), :, torch.arange(H)] = clean_z.to(z.dtype)
                    return z

                x = corrupted.resid[layer, start:].expand(H, -1, -1)
                fns = {f"blocks.{layer}.attn.hook_z": clean_head_each}
                heads[layer] = restored(rerun.last_logits(x, layer, start, fns))
            if progress:
                progress((layer + 1) / L)
    return Patching(answer_clean, answer_corrupted, ld_clean, ld_corrupted, resid, heads)
