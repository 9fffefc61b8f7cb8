"""Reading and changing activations by hook name, in TransformerLens's habits.

    logits, cache = run_with_cache(model, idx, names_filter=lambda name: name.endswith("hook_pattern"))
    cache["blocks.1.attn.hook_pattern"]          # (B, H, T, T)

    def zero_head(z, hook):                       # z: (B, T, H, D)
        z[:, :, 2] = 0
        return z
    with hooks(model, {"blocks.0.attn.hook_z": zero_head}):
        ablated = model(idx)

`act_name` spells a hook name from a short one: `act_name("z", 0)` is `"blocks.0.attn.hook_z"`.

A hook is `fn(activation, hook_point)`; returning a tensor replaces the activation downstream. Both
functions attach their hooks for the calling thread only and always remove them, so several threads
can capture or intervene on one shared model at once, and a thread with no hooks runs the fused fast
path (see `gpt2.hook_points`).
"""

import functools
import re
from collections.abc import Callable, Iterable
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from .hook_points import HookFn, HookPoint, add_hook
from .model import GPT2

NamesFilter = None | str | Iterable[str] | Callable[[str], bool]


class UnknownHookError(KeyError):
    """A hook name that the model does not have."""

    def __str__(self) -> str:
        return str(self.args[0])


def hook_dict(model: nn.Module) -> dict[str, HookPoint]:
    """Every hook point of `model` by its dotted name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, HookPoint)}


@functools.cache
def _act_name_templates() -> dict[str, str]:
    """Short name → full name with `{layer}` for the block number, read off a one-layer model's hook
    points: `"z"` → `"blocks.{layer}.attn.hook_z"`, `"embed"` → `"hook_embed"`."""
    with torch.device("meta"):
        model = GPT2(vocab_size=1, embed_dim=1, num_heads=1, num_layers=1, block_size=1)
    return {
        name.rsplit(".", 1)[-1].removeprefix("hook_"): re.sub(r"^blocks\.0\.", "blocks.{layer}.", name)
        for name in hook_dict(model)
    }


def act_name(name: str, layer: int | None = None) -> str:
    """The full hook name for a short one, in the spirit of TransformerLens's `get_act_name`:
    `act_name("z", 3)` → `"blocks.3.attn.hook_z"`, `act_name("resid_pre", 0)` →
    `"blocks.0.hook_resid_pre"`, `act_name("embed")` → `"hook_embed"`. A hook point inside a block
    needs its `layer`; one outside takes none."""
    templates = _act_name_templates()
    if name not in templates:
        raise ValueError(f"no hook point is called {name!r}; the short names are {', '.join(templates)}")
    per_layer = "{layer}" in templates[name]
    if per_layer and layer is None:
        raise ValueError(f"{name!r} is a hook point of every block: give its layer")
    if not per_layer and layer is not None:
        raise ValueError(f"{name!r} is outside the blocks: it takes no layer")
    return templates[name].format(layer=layer)


def _selected(points: dict[str, HookPoint], names_filter: NamesFilter) -> list[str]:
    if names_filter is None:
        return list(points)
    if callable(names_filter):
        return [name for name in points if names_filter(name)]
    names = [names_filter] if isinstance(names_filter, str) else list(names_filter)
    unknown = [name for name in names if name not in points]
    if unknown:
        raise UnknownHookError(f"the model has no hook point {unknown[0]!r}")
    return names


@contextmanager
def hooks(model: nn.Module, fns: dict[str, HookFn | list[HookFn]]):
    """Attach `{hook name: fn or [fns]}` for the passes this thread runs inside the block."""
    points = hook_dict(model)
    _selected(points, list(fns))  # every name must exist
    with ExitStack() as stack:
        for name, fn_or_fns in fns.items():
            for fn in fn_or_fns if isinstance(fn_or_fns, (list, tuple)) else [fn_or_fns]:
                stack.callback(add_hook(points[name], fn))
        yield


def run_with_cache(
    model: nn.Module,
    idx: torch.Tensor,
    names_filter: NamesFilter = None,
    fwd_hooks: dict[str, HookFn | list[HookFn]] | None = None,
    **forward_kwargs,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run `model(idx, **forward_kwargs)` and return its output with the activations of the hook
    points `names_filter` selects (None: all; a name, a list of names, or a predicate), by name.
    Per-block hook points (`attn.hook_pattern_rows`) are not cached: `hook_pattern` holds the same.
    `fwd_hooks` adds interventions to the same pass; they run before the activation is cached."""
    cache: dict[str, torch.Tensor] = {}

    def store(activation: torch.Tensor, hook: HookPoint) -> None:
        cache[hook.name] = activation.detach()

    points = hook_dict(model)
    names = _selected(points, names_filter)
    per_block = [name for name in names if points[name].per_block]
    if names_filter is None or callable(names_filter):
        names = [name for name in names if name not in per_block]
    elif per_block:
        raise ValueError(f"{per_block[0]} is seen a block of rows at a time, not cached: read it with hooks()")
    with hooks(model, fwd_hooks or {}), hooks(model, dict.fromkeys(names, store)):
        out = model(idx, **forward_kwargs)
    return out, cache
