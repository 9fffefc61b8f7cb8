"""What the circuit tools share: their error, the graph's node names, each pair's clean and corrupted
runs, and the gradient runs (plain or integrated) that attribution reads (docs/lab.md, "Circuits")."""

from dataclasses import dataclass

import torch

from ..heads.common import head_label
from ..hooks import hooks, run_with_cache
from ..lab import LabError
from ..lab.common import ids_tensor
from ..lab.pairs import pair_answers, prompt_pairs, resolve_answers

MAX_STEPS = 64  # integrated-gradient runs


class CircuitError(LabError):
    """A circuit request that cannot be answered (the message says why, in one line)."""


head_node = head_label  # a head's node is named as everywhere else: "L1H0"


def mlp_node(layer: int) -> str:
    return f"MLP{layer}"


@dataclass
class PairRuns:
    """One clean/corrupted pair: its answers, logit differences, input embeddings (1, T, C) and the
    activations of the hook points asked for, by name, from both runs."""

    answers: tuple[int, int]
    ld_clean: float
    ld_corrupted: float
    embed_clean: torch.Tensor
    embed_corrupted: torch.Tensor
    clean: dict[str, torch.Tensor]
    corrupted: dict[str, torch.Tensor]


def logit_diff(model, final: torch.Tensor, answers: tuple[int, int]) -> torch.Tensor:
    """(B,) logit of the clean answer minus the corrupted one at the last position, from the stream
    after the last block (B, T, C)."""
    logits = model.unembed(final, only_last=True)[:, -1]
    return logits[:, answers[0]].float() - logits[:, answers[1]].float()


def check_steps(steps: int) -> int:
    if not isinstance(steps, int) or not 0 <= steps <= MAX_STEPS:
        raise CircuitError(f"steps must be a whole number from 0 (plain gradients) to {MAX_STEPS}, not {steps!r}")
    return steps


@torch.no_grad()
def pair_runs(model, clean_ids, corrupted_ids, answers, names: list[str]) -> list[PairRuns]:
    """Each pair's clean and corrupted runs with `names` cached; answers resolved (given, or each
    prompt's top next token)."""
    pairs = prompt_pairs(clean_ids, corrupted_ids)
    block = model.config.block_size
    runs = []
    for index, ((clean, corrupted), given) in enumerate(zip(pairs, pair_answers(answers, len(pairs)), strict=True)):
        where = f"pair {index + 1}: " if len(pairs) > 1 else ""
        if len(clean) > block:
            raise CircuitError(f"{where}the prompts have {len(clean)} tokens; this model reads at most {block}")
        ids = [ids_tensor(model, clean), ids_tensor(model, corrupted)]
        (clean_logits, clean_cache), (corrupted_logits, corrupted_cache) = (
            run_with_cache(model, idx, names, only_last=True) for idx in ids
        )
        pair_answer = resolve_answers(given, clean_logits[0, -1], corrupted_logits[0, -1], where)
        ld = [
            float(logits[0, -1, pair_answer[0]] - logits[0, -1, pair_answer[1]])
            for logits in (clean_logits, corrupted_logits)
        ]
        embeds = [model.embed(idx) for idx in ids]
        runs.append(PairRuns(pair_answer, *ld, *embeds, clean_cache, corrupted_cache))
    ld_clean = sum(r.ld_clean for r in runs) / len(runs)
    ld_corrupted = sum(r.ld_corrupted for r in runs) / len(runs)
    if abs(ld_clean - ld_corrupted) < 1e-6:
        raise CircuitError("the two prompts give the same logit difference: there is no effect to attribute")
    return runs


def mean_lds(runs: list[PairRuns]) -> tuple[float, float]:
    return sum(r.ld_clean for r in runs) / len(runs), sum(r.ld_corrupted for r in runs) / len(runs)


def gradients(model, run: PairRuns, names: list[str], steps: int, at: str) -> dict[str, torch.Tensor]:
    """∂LD/∂(each named activation), (1, ...) each: with `steps` = 0, taken in the `at` run ("clean"
    or "corrupted"); otherwise the mean over `steps` runs whose input embeddings lie on the line from
    the corrupted to the clean ones, at α = (j + ½) / steps."""
    e_clean, e_corrupted = run.embed_clean, run.embed_corrupted
    if steps == 0:
        inputs = [e_clean if at == "clean" else e_corrupted]
    else:
        inputs = [e_corrupted + (j + 0.5) / steps * (e_clean - e_corrupted) for j in range(steps)]
    total = None
    for x in inputs:
        seen: dict[str, torch.Tensor] = {}

        def keep(activation, hook, seen=seen):  # a view of its own: the gradient of what this hook point passes on
            seen[hook.name] = activation.view_as(activation)
            return seen[hook.name]

        x = x.detach().requires_grad_()
        with torch.enable_grad(), hooks(model, dict.fromkeys(names, keep)):
            ld = logit_diff(model, model.run_blocks(x), run.answers).sum()
        grads = torch.autograd.grad(ld, [seen[name] for name in names], allow_unused=True, materialize_grads=True)
        total = list(grads) if total is None else [t.add_(g) for t, g in zip(total, grads, strict=True)]
    return {name: g / len(inputs) for name, g in zip(names, total, strict=True)}
