"""Sampling: temperature (0 = greedy), top-k, top-p, a seedable generator, a KV cache, and streaming."""

from collections.abc import Iterator

import torch

EOT_TOKEN = 50256  # <|endoftext|>


class SamplingError(ValueError):
    """A generation setting out of range (the message says which and why)."""


def check_sampling_args(max_new_tokens, temperature, top_k, top_p, vocab_size: int) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise SamplingError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    if not isinstance(temperature, (int, float)) or not temperature >= 0 or temperature == float("inf"):
        raise SamplingError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= vocab_size):
        raise SamplingError(f"top_k must be an integer in [0, {vocab_size}] (0 = off), got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise SamplingError(f"top_p must be in (0, 1], got {top_p!r}")


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


def _make_generator(seed: int | None, generator: torch.Generator | None, device) -> torch.Generator | None:
    if generator is not None or seed is None:
        return generator
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SamplingError(f"seed must be an integer, got {seed!r}")
    return torch.Generator(device=device).manual_seed(seed)


def _next_token_steps(model, idx, max_new_tokens, temperature, top_k, top_p, generator) -> Iterator[torch.Tensor]:
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
    for step in range(max_new_tokens):
        next_ids = sample_next(logits, temperature, top_k, top_p, generator)
        yield next_ids
        if step + 1 == max_new_tokens:
            return
        if cache.length < block_size:
            logits = model(next_ids[:, None], cache, only_last=True)[:, -1]
        else:
            generated.append(next_ids[:, None])
            window = torch.cat([idx, *generated], dim=1)[:, -block_size:]
            logits = model(window, only_last=True)[:, -1]


def generate(
    model,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    stop_at_eot: bool = False,
) -> torch.Tensor:
    """Return `idx` (B, T) followed by up to `max_new_tokens` sampled tokens.

    temperature 0 is greedy decoding. `seed` (or an explicit `generator`) makes sampling repeatable.
    With `stop_at_eot`, generation ends once every row has produced <|endoftext|>; finished rows are
    padded with it.
    """
    check_sampling_args(max_new_tokens, temperature, top_k, top_p, model.config.vocab_size)
    if idx.dim() != 2 or idx.size(1) == 0:
        raise SamplingError("idx must be a non-empty (B, T) tensor of token ids")
    generator = _make_generator(seed, generator, idx.device)
    with torch.inference_mode():
        out = _generate(model, idx, max_new_tokens, temperature, top_k, top_p, generator, stop_at_eot)
    return out.clone()  # a normal tensor, usable in autograd outside inference mode


def _generate(model, idx, max_new_tokens, temperature, top_k, top_p, generator, stop_at_eot) -> torch.Tensor:
    finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    out = [idx]
    for next_ids in _next_token_steps(model, idx, max_new_tokens, temperature, top_k, top_p, generator):
        if stop_at_eot:
            next_ids = next_ids.masked_fill(finished, EOT_TOKEN)
            finished |= next_ids == EOT_TOKEN
        out.append(next_ids[:, None])
        if stop_at_eot and bool(finished.all()):
            break
    return torch.cat(out, dim=1)


@torch.inference_mode()
def stream_tokens(
    model,
    prompt_ids,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    stop_at_eot: bool = False,
) -> Iterator[int]:
    """Yield each new token id of one sequence as soon as it is sampled (same options as `generate`).

    With `stop_at_eot`, <|endoftext|> is yielded and then the stream ends.
    """
    check_sampling_args(max_new_tokens, temperature, top_k, top_p, model.config.vocab_size)
    device = model.wte.weight.device
    idx = torch.as_tensor(prompt_ids, dtype=torch.long, device=device).reshape(1, -1)
    if idx.size(1) == 0:
        raise SamplingError("the prompt has no tokens")
    generator = _make_generator(seed, generator, device)
    for next_ids in _next_token_steps(model, idx, max_new_tokens, temperature, top_k, top_p, generator):
        token = int(next_ids[0])
        yield token
        if stop_at_eot and token == EOT_TOKEN:
            return
