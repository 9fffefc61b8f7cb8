"""The causal tools, a module per tool: what heads do, not only where they look. Quantities as `docs/lab.md` defines them.

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

from .ablation import (
    ABLATION_MODES,
    Ablation,
    ablated_analysis,
    ablation_hooks,
    ablation_sweep,
    mean_z,
)
from .attribution import Attribution, direct_attribution
from .common import ROW_CHUNK, LabError, Progress
from .lens import LogitLens, lens_ranks, logit_lens, token_losses
from .patching import PATCH_BATCH, Patching, patch

__all__ = [
    "ABLATION_MODES",
    "PATCH_BATCH",
    "ROW_CHUNK",
    "Ablation",
    "Attribution",
    "LabError",
    "LogitLens",
    "Patching",
    "Progress",
    "ablated_analysis",
    "ablation_hooks",
    "ablation_sweep",
    "direct_attribution",
    "lens_ranks",
    "logit_lens",
    "mean_z",
    "patch",
    "token_losses",
]
