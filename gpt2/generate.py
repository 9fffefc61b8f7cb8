"""Sampling: one settings object, temperature (0 = greedy), top-k, top-p, a seed, a KV cache, streaming.

`SamplingSettings` is the one place generation settings are checked; the library, the command line,
the app and its API all build one. Its defaults (temperature 0.8, top-k 50) give readable text from
the bundled model and from GPT-2 alike; temperature 1 without top-k samples the long tail.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .config import EOT_ID, VOCAB_SIZE, GPT2Config


class SamplingError(ValueError):
    """A generation setting out of range (the message says which and why)."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class SamplingSettings:
    """How to continue a prompt. `top_k` None (or 0) and `top_p` None (or 1) switch those filters off;
    `seed` makes sampling repeatable; with `stop_at_eot` generation ends at <|endoftext|>."""

    max_new_tokens: int = 100
    temperature: float = 0.8
    top_k: int | None = 50
    top_p: float | None = None
    seed: int | None = None
    stop_at_eot: bool = False

    def __post_init__(self):
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 0:
            raise SamplingError(f"max_new_tokens must be a non-negative integer, got {self.max_new_tokens!r}")
        if not _is_number(self.temperature) or not 0 <= self.temperature < math.inf:
            raise SamplingError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        if self.top_k is not None and (not _is_int(self.top_k) or not 0 <= self.top_k <= VOCAB_SIZE):
            raise SamplingError(f"top_k must be an integer in [0, {VOCAB_SIZE}] (0 = off), got {self.top_k!r}")
        if self.top_p is not None and (not _is_number(self.top_p) or not 0 < self.top_p <= 1):
            raise SamplingError(f"top_p must be in (0, 1] (1 = off), got {self.top_p!r}")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed < 2**63):
            raise SamplingError(f"seed must be an integer between 0 and 2**63 - 1, got {self.seed!r}")
        if not isinstance(self.stop_at_eot, bool):
            raise SamplingError(f"stop_at_eot must be true or false, got {self.stop_at_eot!r}")
        # normal forms: 0 and 1 mean "off", so they compare equal to None
        if self.top_k == 0:
            object.__setattr__(self, "top_k", None)
        if self.top_p == 1:
            object.__setattr__(self, "top_p", None)

    @classmethod
    def from_form(cls, max_new_tokens, temperature, top_k, top_p, seed, **extra) -> "SamplingSettings":
        """Settings as a form or an API sends them: sliders send whole numbers as floats (40.0)."""
        return cls(
            max_new_tokens=_whole(max_new_tokens, "max_new_tokens"),
            temperature=temperature,
            top_k=_whole(top_k, "top_k"),
            top_p=top_p,
            seed=_whole(seed, "seed"),
            **extra,
        )


def _whole(value, name: str):
    """A float that holds a whole number, as an int; anything else unchanged (and checked later)."""
    if isinstance(value, float):
        if not value.is_integer():
            raise SamplingError(f"{name} must be an integer, got {value!r}")
        return int(value)
    return value


class KVCache:
    """Keys and values of every layer, pre-allocated to `max_len` tokens and written in place."""

    def __init__(self, config: GPT2Config, batch_size: int, max_len: int, device=None, dtype=torch.float32):
        shape = (config.num_layers, batch_size, config.num_heads, max_len, config.head_dim)
        self.keys = torch.empty(shape, device=device, dtype=dtype)  # (L, B, H, max_len, D)
        self.values = torch.empty(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.length = 0  # tokens stored so far

    def rows(self, batch_size: int) -> "KVCache":
        """The first `batch_size` batch rows, sharing this cache's storage and length."""
        view = object.__new__(KVCache)
        view.keys, view.values = self.keys[:, :batch_size], self.values[:, :batch_size]
        view.max_len, view.length = self.max_len, self.length
        return view

    def refill(self, keys: torch.Tensor, values: torch.Tensor, length: int, first_layer: int = 0) -> None:
        """Hold the first `length` positions of a cached run's keys and values, (L, B, H, T, D) with
        T >= length, in the layers from `first_layer` on; B may be 1, one run for every batch row.
        The next pass continues at position `length`; the layers before `first_layer` keep what they
        hold, which a rerun from `first_layer` (`GPT2.run_blocks`) never reads."""
        if length > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} tokens; {length} requested")
        self.keys[first_layer:, :, :, :length] = keys[first_layer:, :, :, :length]
        self.values[first_layer:, :, :, :length] = values[first_layer:, :, :, :length]
        self.length = length

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys/values (B, H, T, D) after the cached ones; return all of them."""
        end = self.length + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} tokens; {end} requested")
        self.keys[layer, :, :, self.length : end] = k
        self.values[layer, :, :, self.length : end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next token ids (B,) from last-position logits (B, V)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k:
        # Sample among the k best only: the softmax and the draw touch k values, not the vocabulary.
        candidates, candidate_ids = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1)  # sorted, (B, k)
    elif top_p is not None and top_p < 1:
        candidates, candidate_ids = torch.sort(logits, dim=-1, descending=True)
    else:
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    if top_p is not None and top_p < 1:
        probs = torch.softmax(candidates, dim=-1)
        # Drop a candidate once the more likely ones before it already reach top_p (the best always stays).
        outside_nucleus = (probs.cumsum(dim=-1) - probs) >= top_p
        candidates = candidates.masked_fill(outside_nucleus, float("-inf"))
    probs = torch.softmax(candidates, dim=-1)
    choice = torch.multinomial(probs, 1, generator=generator)  # (B, 1) index into the candidates
    return candidate_ids.gather(-1, choice).squeeze(1)


def _make_generator(settings: SamplingSettings, generator: torch.Generator | None, device):
    if generator is not None or settings.seed is None:
        return generator
    return torch.Generator(device=device).manual_seed(settings.seed)


def _next_token_steps(model, idx, settings: SamplingSettings, generator) -> Iterator[torch.Tensor]:
    """Yield (B,) new token ids, one step at a time.

    Up to `block_size` tokens the keys and values of earlier tokens come from the cache. Past it the
    model conditions on the last `block_size` tokens only; since positions are absolute, that window is
    recomputed from scratch at every step.
    """
    block_size = model.config.block_size
    idx = idx[:, -block_size:]
    cache = model.new_kv_cache(idx.size(0))
    logits = model(idx, cache, only_last=True)[:, -1]  # (B, V)
    generated: list[torch.Tensor] = []
    for step in range(settings.max_new_tokens):
        next_ids = sample_next(logits, settings.temperature, settings.top_k, settings.top_p, generator)
        yield next_ids
        if step + 1 == settings.max_new_tokens:
            return
        if cache.length < block_size:
            logits = model(next_ids[:, None], cache, only_last=True)[:, -1]
        else:
            generated.append(next_ids[:, None])
            window = torch.cat([idx, *generated], dim=1)[:, -block_size:]
            logits = model(window, only_last=True)[:, -1]


def generate(
    model, idx: torch.Tensor, settings: SamplingSettings, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Return `idx` (B, T) followed by up to `settings.max_new_tokens` sampled tokens.

    With `stop_at_eot`, generation ends once every row has produced <|endoftext|>; finished rows are
    padded with it. An explicit `generator` overrides the settings' seed.
    """
    if idx.dim() != 2 or idx.size(1) == 0:
        raise SamplingError("idx must be a non-empty (B, T) tensor of token ids")
    generator = _make_generator(settings, generator, idx.device)
    finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    out = [idx]
    with torch.inference_mode():
        for next_ids in _next_token_steps(model, idx, settings, generator):
            if settings.stop_at_eot:
                next_ids = next_ids.masked_fill(finished, EOT_ID)
                finished |= next_ids == EOT_ID
            out.append(next_ids[:, None])
            if settings.stop_at_eot and bool(finished.all()):
                break
        result = torch.cat(out, dim=1)
    return result.clone()  # a normal tensor, usable in autograd outside inference mode


@torch.inference_mode()
def stream_tokens(
    model, prompt_ids, settings: SamplingSettings, generator: torch.Generator | None = None
) -> Iterator[int]:
    """Yield each new token id of one sequence as soon as it is sampled. With `stop_at_eot`,
    <|endoftext|> is yielded and then the stream ends."""
    device = model.wte.weight.device
    idx = torch.as_tensor(prompt_ids, dtype=torch.long, device=device).reshape(1, -1)
    if idx.size(1) == 0:
        raise SamplingError("the prompt has no tokens")
    generator = _make_generator(settings, generator, device)
    for next_ids in _next_token_steps(model, idx, settings, generator):
        token = int(next_ids[0])
        yield token
        if settings.stop_at_eot and token == EOT_ID:
            return
