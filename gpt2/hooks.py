"""Hook points and attention capture.

A `HookPoint` is an identity module placed on an intermediate activation, in TransformerLens's habit:
its dotted name in the model (`blocks.3.attn.hook_pattern`) is stable, and registering a forward hook on
it is how anything reads that activation. Attention layers compute explicit probabilities only while
their hook point has a hook, so an unhooked model runs on the fused SDPA kernel.
"""

import threading
from contextlib import contextmanager

import torch
from torch import nn


class HookPoint(nn.Module):
    """Identity on the forward pass; a named place to attach forward hooks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def has_hooks(self) -> bool:
        return bool(self._forward_hooks) or bool(self._forward_pre_hooks)


def attention_hook_names(model: nn.Module) -> list[str]:
    """Names of the attention-probability hook points, in layer order."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, HookPoint) and name.endswith("hook_pattern")
    ]


@contextmanager
def capture_attention(model: nn.Module, into: torch.Tensor | None = None):
    """Capture every layer's attention probabilities during forward passes run inside the block.

        with capture_attention(model) as maps:
            model(idx)
        # maps[layer] is a detached (B, num_heads, T_query, T_key) tensor

    With `into`, a preallocated (num_layers, B, num_heads, T_query, T_key) tensor, each layer's map is
    copied into it as soon as it is made and `maps[layer]` is a view of it: the maps then take no more
    memory than `into` itself plus one layer's working set.

    Each forward pass overwrites the list with its own maps. Only calls made on the thread that entered
    the block are recorded, so several threads can capture on one shared model at once without seeing
    each other's maps. The hooks are removed on exit, also after an exception.
    """
    modules = dict(model.named_modules())
    names = attention_hook_names(model)
    maps: list[torch.Tensor | None] = [None] * len(names)
    owner = threading.get_ident()

    def make_hook(layer: int):
        def hook(_module, _inputs, output):
            if threading.get_ident() != owner:
                return
            if into is None:
                maps[layer] = output.detach()
            else:
                into[layer].copy_(output.detach())
                maps[layer] = into[layer]

        return hook

    handles = [modules[name].register_forward_hook(make_hook(i)) for i, name in enumerate(names)]
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()
