"""Attribution patching: activation patching's scores estimated from gradients, for every position of
the residual stream, every head and every MLP at once (docs/lab.md, "Circuits")."""

import torch

from ..hooks import act_name
from ..lab.pairs import right_aligned
from ..lab.patching import Patching
from .common import check_steps, gradients, mean_lds, pair_runs


def attribution_patching(model, clean_ids, corrupted_ids, answers=None, steps: int = 5) -> Patching:
    """Estimated patching scores, normalised like `gpt2.lab.patch`: `resid` (L, T) the stream entering
    each layer at one position, `heads` (L, H) one head's `hook_z` at every position, `mlp` (L,) one
    MLP's output at every position. Each is (A_clean − A_corrupted) · ∂LD/∂A over (LD_clean −
    LD_corrupted), the gradient taken in the corrupted run (`steps` = 0: one clean forward, one
    corrupted forward and backward) or averaged over `steps` runs on the line from the corrupted
    input embeddings to the clean ones (integrated gradients). Prompt sets as in `patch`."""
    check_steps(steps)
    L = model.config.num_layers
    parts = ("resid_pre", "z", "mlp_out")
    names = [act_name(part, layer) for part in parts for layer in range(L)]
    runs = pair_runs(model, clean_ids, corrupted_ids, answers, names)
    resid, heads, mlp = [], [], []
    for run in runs:
        grads = gradients(model, run, names, steps, at="corrupted")

        def effect(part: str, layer: int, keep: tuple[int, ...], run=run, grads=grads) -> torch.Tensor:
            name = act_name(part, layer)
            product = (run.clean[name] - run.corrupted[name]).double() * grads[name].double()
            return product.sum([d for d in range(product.dim()) if d not in keep])

        resid.append(torch.stack([effect("resid_pre", layer, (1,)) for layer in range(L)]).cpu())  # (L, T)
        heads.append(torch.stack([effect("z", layer, (2,)) for layer in range(L)]).cpu())  # (L, H)
        mlp.append(torch.stack([effect("mlp_out", layer, ()) for layer in range(L)]).cpu())  # (L,)
    ld_clean, ld_corrupted = mean_lds(runs)

    def normalised(per_pair: torch.Tensor) -> torch.Tensor:  # (n, ...) → the set's mean, as a share
        return (per_pair.mean(0) / (ld_clean - ld_corrupted)).float()

    answers = tuple(run.answers for run in runs)
    return Patching(
        *answers[0],
        ld_clean,
        ld_corrupted,
        resid=normalised(right_aligned(resid, [0.0] * len(runs))),
        heads=normalised(torch.stack(heads)),
        mlp=normalised(torch.stack(mlp)),
        answers=answers,
    )
