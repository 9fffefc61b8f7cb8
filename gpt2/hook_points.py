"""Hook points: named identity modules on the model's activations, with hooks kept per thread.

A `HookPoint` sits on an intermediate activation, in TransformerLens's habit: its dotted name in the
model (`blocks.3.attn.hook_z`) is stable, and a hook attached to it sees the activation and may
replace it by returning a tensor. Hooks attached through `add_hook` (what `gpt2.hooks` uses) are
seen only by passes that run on the thread that attached them, so one model can serve many users
at once: a thread with no hooks runs the plain fast path whatever the others are doing. PyTorch's
own `register_forward_hook` works on a hook point too, but such a hook is seen by every thread.
"""

import threading
from collections.abc import Callable

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, "HookPoint"], torch.Tensor | None]

_local = threading.local()  # .hooks: {HookPoint: [HookFn, ...]} of the current thread


def _thread_hooks() -> dict:
    hooks = getattr(_local, "hooks", None)
    if hooks is None:
        hooks = _local.hooks = {}
    return hooks


class HookPoint(nn.Module):
    """Identity on the forward pass; a named place to read or replace an activation."""

    def __init__(self, per_block: bool = False) -> None:
        super().__init__()
        self.name = ""  # the dotted name in the model, set by GPT2
        self.per_block = per_block  # seen several times a pass, a block of rows each time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # The unhooked case is the hot path (every decode step passes ~14 hook points a layer):
        # skip nn.Module's call machinery unless a PyTorch hook is registered.
        fns = getattr(_local, "hooks", None)
        fns = fns.get(self) if fns else None
        if self._forward_hooks or self._forward_pre_hooks:
            x = super().__call__(x)
        for fn in fns or ():
            out = fn(x, self)
            if out is not None:
                x = out
        return x

    def is_hooked(self) -> bool:
        """Whether a hook sees this activation in passes on the calling thread."""
        hooks = getattr(_local, "hooks", None)
        return bool(self._forward_hooks or self._forward_pre_hooks or (hooks and hooks.get(self)))

    def extra_repr(self) -> str:
        return self.name


def add_hook(point: HookPoint, fn: HookFn) -> Callable[[], None]:
    """Attach `fn` to `point` for the calling thread; returns the function that detaches it."""
    hooks = _thread_hooks()
    hooks.setdefault(point, []).append(fn)

    def remove() -> None:
        fns = hooks.get(point, [])
        if fn in fns:
            fns.remove(fn)
        if not fns:
            hooks.pop(point, None)

    return remove
