"""The training curriculum: what a step's batch holds, drawn from named window sources mixed by weight.

Each process's batch, every micro-step, is up to two groups of windows (`--batch mix=16,copy=64`):

- `mix` windows, `--seq-len` tokens long and scored over the whole vocabulary. Each one comes from a
  source picked at random by `--mix` share (`--mix text=0.5,lagged=0.4,synthetic=0.1`):
  - `text`: a stretch of the training text;
  - `synthetic`: a run of 8 to T/2 distinct tokens (from those seen 5 times in training) repeated
    to fill the window; after the first run every token is predictable only by copying from
    context, the job of an induction head;
  - `lagged`: random tokens from the 500 most frequent, each from the third on, half the time, a
    copy of the token two back; predicting then needs the previous token at every position, the
    job of a previous-token head.
- `copy` windows, `--copy-seq-len` tokens of runs like `synthetic`'s drawn from the
  `--copy-pool-size` most frequent tokens, scored over the pool's logits only (`pool_cross_entropy`):
  about 1% of the full head's work, so a step can hold hundreds of them, as many as an induction
  head needs to form.

`--position-init helix` starts the positional embeddings on a helix that one rotation maps one
position ahead, and keeps them out of weight decay.

All draws come from one generator, in a fixed order, the same on every process (each then takes its
own rows): a run is repeated exactly by its seed, and one that `--resume`s draws what it would have.
"""

import argparse
import math
from dataclasses import dataclass

import torch

from .data import frequent_tokens, random_distinct_tokens, token_pool
from .loss import chunked_cross_entropy, pool_cross_entropy

GROUPS = ("mix", "copy")
MIX_SOURCES = ("text", "synthetic", "lagged")  # a window's source is picked against their shares in this order
MIN_RUN_POOL = 8  # distinct tokens a source of repeated runs needs


# -- the sources: each returns (rows, length) token windows; a window's targets are its tokens shifted by one


def text_windows(tokens: torch.Tensor, rows: int, length: int, generator: torch.Generator) -> torch.Tensor:
    # the exclusive bound leaves out the very last start; kept so that seeded runs repeat
    starts = torch.randint(len(tokens) - length, (rows,), generator=generator)
    return tokens[starts[:, None] + torch.arange(length)]


def repeated_random_window(pool: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """`length` tokens: a run of 8 to length // 2 distinct tokens from `pool`, repeated. Only the first
    run is unpredictable; after it every token is predictable by attending to what followed the
    earlier copy of the current token, so these windows reward induction heads and nothing else."""
    longest = min(length // 2, pool.numel())
    run = int(torch.randint(min(8, longest), longest + 1, (1,), generator=generator))
    return random_distinct_tokens(pool, run, generator).repeat(length // run + 1)[:length]


def repeated_random_windows(pool: torch.Tensor, rows: int, length: int, generator: torch.Generator) -> torch.Tensor:
    return torch.stack([repeated_random_window(pool, length, generator) for _ in range(rows)])


def lagged_copy_windows(
    pool: torch.Tensor, rows: int, length: int, generator: torch.Generator, copy_prob: float = 0.5
) -> torch.Tensor:
    """(rows, length) random `pool` tokens where each token from the third on is, with probability
    `copy_prob`, a copy of the token two places back. Predicting the token after position t then
    needs the token at t - 1, at every position, so these windows reward a previous-token head."""
    fresh = pool[torch.randint(pool.numel(), (rows, length), generator=generator)]
    copied = torch.rand(rows, length, generator=generator) < copy_prob
    copied[:, :2] = False
    source = torch.where(copied, 0, torch.arange(length))  # own position where fresh, else 0
    for parity in (0, 1):  # each chain of every other position: copy from the latest fresh token in it
        source[:, parity::2] = source[:, parity::2].cummax(-1).values
    return fresh.gather(1, source)


SOURCE_WINDOWS = {"synthetic": repeated_random_windows, "lagged": lagged_copy_windows}


def copy_batch(pool: torch.Tensor, windows: int, length: int, generator: torch.Generator):
    """Inputs and targets (windows, length) of repeated random runs of `pool` tokens, for a loss over
    the pool's logits only (what a `copy` group holds)."""
    rows = repeated_random_windows(pool, windows, length + 1, generator)
    return rows[:, :-1], rows[:, 1:]


def mix_windows(text, rows: int, length: int, shares: dict, pools: dict, generator) -> torch.Tensor:
    """(rows, length) windows, each from a source picked by `shares` (fractions of the rows)."""
    windows = text_windows(text, rows, length, generator)  # every row starts as text, whatever the shares
    if any(shares[name] for name in SOURCE_WINDOWS):
        pick = torch.rand(rows, generator=generator)  # a row takes the source whose share interval holds it
        low = 0.0  # the text share is what the other sources leave, above their intervals
        for name in MIX_SOURCES[1:]:
            chosen = (pick >= low) & (pick < low + shares[name])
            if chosen.any():
                windows[chosen] = SOURCE_WINDOWS[name](pools[name], int(chosen.sum()), length, generator)
            low += shares[name]
    return windows


# -- what a step draws


def lm_loss(model, idx, targets, pool: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy through the chunked head (no full logits kept); with `pool`,
    over those tokens' logits only. `model` may be wrapped in DistributedDataParallel."""
    hidden = model(idx, return_hidden=True)
    head = getattr(model, "module", model).lm_head.weight
    if pool is not None:
        return pool_cross_entropy(hidden, head, targets, pool.to(head.device))
    return chunked_cross_entropy(hidden, head, targets)


@dataclass
class WindowGroup:
    """One group of a step's windows: inputs and targets (rows, T) of every process, `per_process`
    rows each, and the pool whose logits score them (None: the whole vocabulary)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    pool: torch.Tensor | None
    per_process: int

    def loss(self, model, rank: int, device) -> torch.Tensor:
        rows = slice(rank * self.per_process, (rank + 1) * self.per_process)  # this process's share
        return lm_loss(model, self.inputs[rows].to(device), self.targets[rows].to(device), self.pool)


@dataclass
class Curriculum:
    text: torch.Tensor  # the training token stream
    batch: dict  # group name -> windows per process and micro-step
    shares: dict  # mix source -> share of the mix windows
    seq_len: int  # mix windows' length
    copy_seq_len: int
    pools: dict  # source -> the tokens its windows draw from ("synthetic", "lagged", "copy")
    world: int = 1  # processes; each draw holds every process's rows

    @classmethod
    def from_args(cls, args, train_tokens: torch.Tensor, block_size: int, world: int) -> "Curriculum":
        seq_len = args.seq_len or block_size
        if not 1 < seq_len <= block_size:
            raise SystemExit(f"error: --seq-len must be between 2 and the block size {block_size}")
        if "copy" in args.batch and args.copy_seq_len > block_size:
            raise SystemExit(f"error: --copy-seq-len must be at most the block size {block_size}")
        pools = {}
        if "mix" in args.batch and args.mix["synthetic"]:
            pools["synthetic"] = token_pool(train_tokens)
        if "mix" in args.batch and args.mix["lagged"]:
            pools["lagged"] = frequent_tokens(train_tokens)
        if "copy" in args.batch:
            size = args.copy_pool_size
            pools["copy"] = frequent_tokens(train_tokens, size) if size else token_pool(train_tokens)
        for name in ("synthetic", "copy"):
            if name in pools and pools[name].numel() < MIN_RUN_POOL:
                raise SystemExit(
                    f"error: {name} windows need at least {MIN_RUN_POOL} distinct tokens seen 5 times in the "
                    "training text"
                )
        return cls(train_tokens, args.batch, args.mix, seq_len, args.copy_seq_len, pools, world)

    @property
    def tokens_per_draw(self) -> int:
        """Input tokens of one draw, over every process."""
        lengths = {"mix": self.seq_len, "copy": self.copy_seq_len}
        return sum(count * self.world * lengths[group] for group, count in self.batch.items())

    def describe(self) -> str:
        mix = ", ".join(f"{name} {share:g}" for name, share in self.shares.items() if share)
        parts = {"mix": f"mix windows of {self.seq_len} ({mix})", "copy": f"copy windows of {self.copy_seq_len}"}
        return " + ".join(f"{count} {parts[group]}" for group, count in self.batch.items())

    def draw(self, generator: torch.Generator) -> list[WindowGroup]:
        """One micro-step's windows for every process: the mix group's, then the copy group's."""
        groups = []
        if "mix" in self.batch:
            rows = self.batch["mix"] * self.world
            windows = mix_windows(self.text, rows, self.seq_len + 1, self.shares, self.pools, generator)
            groups.append(WindowGroup(windows[:, :-1], windows[:, 1:], None, self.batch["mix"]))
        if "copy" in self.batch:
            rows = self.batch["copy"] * self.world
            inputs, targets = copy_batch(self.pools["copy"], rows, self.copy_seq_len, generator)
            groups.append(WindowGroup(inputs, targets, self.pools["copy"], self.batch["copy"]))
        return groups


# -- positional embeddings


def helix_positions(
    block_size: int,
    embed_dim: int,
    num_frequencies: int = 16,
    periods: tuple[float, float] = (2.5, 32.0),
    row_norm: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(block_size, embed_dim) positional embeddings on a helix: `num_frequencies` pairs of
    coordinates turn by a fixed angle per position (periods spaced geometrically), placed in a random
    subspace. One fixed rotation maps every position's row to the next one's, so a query/key map
    that attends one position back works at every position, including ones never trained on."""
    if 2 * num_frequencies > embed_dim:
        raise ValueError(f"{num_frequencies} frequencies need {2 * num_frequencies} dims; embed_dim is {embed_dim}")
    omega = 2 * math.pi / torch.logspace(math.log10(periods[0]), math.log10(periods[1]), num_frequencies)
    phase = 2 * math.pi * torch.rand(num_frequencies, generator=generator)
    angles = torch.arange(block_size)[:, None] * omega + phase  # (T, F)
    coords = torch.cat([angles.cos(), angles.sin()], dim=1) * (row_norm / math.sqrt(num_frequencies))  # (T, 2F)
    basis, _ = torch.linalg.qr(torch.randn(embed_dim, 2 * num_frequencies, generator=generator))  # (C, 2F)
    return coords @ basis.T


def init_positions(model, how: str) -> None:
    """Overwrite a fresh model's positional embeddings (`gpt2`: keep GPT-2's random init), drawing
    from torch's global generator."""
    if how == "helix":
        with torch.no_grad():
            model.wpe.weight.copy_(helix_positions(model.config.block_size, model.config.embed_dim))


def fixed_scale_params(model, how: str) -> list[torch.nn.Parameter]:
    """Parameters to keep out of weight decay: a helix keeps its scale."""
    return [model.wpe.weight] if how == "helix" else []


# -- command line


def parse_counts(text: str) -> dict:
    """`--batch`: "mix=16,copy=64" (a bare number N means mix=N) -> {"mix": 16, "copy": 64}."""
    counts = {}
    for item in text.split(","):
        name, _, count = item.strip().rpartition("=")
        name = name or "mix"
        if name not in GROUPS or name in counts or not count.isdigit() or int(count) < 1:
            raise argparse.ArgumentTypeError(f"{item!r}: expected GROUP=COUNT with GROUP in {GROUPS} and COUNT >= 1")
        counts[name] = int(count)
    return {name: counts[name] for name in GROUPS if name in counts}


def parse_shares(text: str) -> dict:
    """`--mix`: "lagged=0.4,synthetic=0.1" -> every source's share; text takes what the others leave
    (given explicitly, the shares must add up to 1)."""
    given = {}
    for item in text.split(","):
        name, _, value = item.strip().partition("=")
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if name not in MIX_SOURCES or name in given or not 0.0 <= share <= 1.0:
            expected = f"expected SOURCE=SHARE with SOURCE in {MIX_SOURCES} and 0 <= SHARE <= 1"
            raise argparse.ArgumentTypeError(f"{item!r}: {expected}")
        given[name] = share
    others = sum(given.get(name, 0.0) for name in MIX_SOURCES[1:])
    if others > 1 + 1e-9 or ("text" in given and abs(given["text"] + others - 1) > 1e-9):
        raise argparse.ArgumentTypeError(f"{text!r}: the shares add up to {others + given.get('text', 0.0):g}, not 1")
    return {"text": given.get("text", 1.0 - others), **{name: given.get(name, 0.0) for name in MIX_SOURCES[1:]}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("batch and curriculum (gpt2.curriculum)")
    g.add_argument(
        "--batch",
        type=parse_counts,
        default="mix=16",
        help="windows per process and micro-step by group: mix (--mix's sources) and copy (default: mix=16)",
    )
    g.add_argument(
        "--mix",
        type=parse_shares,
        default="text=1",
        help="the mix windows' sources and shares: text, synthetic, lagged (e.g. text=0.5,lagged=0.4,synthetic=0.1)",
    )
    g.add_argument("--seq-len", type=int, help="mix windows' length, at most the block size (default: the block size)")
    g.add_argument("--copy-seq-len", type=int, default=64, help="copy windows' length")
    g.add_argument(
        "--copy-pool-size",
        type=int,
        default=500,
        help="copy windows draw from this many most frequent training tokens (0: every token seen 5 times)",
    )
    g.add_argument(
        "--position-init",
        choices=("gpt2", "helix"),
        default="gpt2",
        help="positional embeddings: GPT-2's random init, or a helix kept out of weight decay (with --init-from "
        "only the latter)",
    )


def check_arguments(parser: argparse.ArgumentParser, args) -> None:
    if args.copy_pool_size < 0 or args.copy_seq_len < 2:
        parser.error("--copy-pool-size must be at least 0, --copy-seq-len at least 2")
    if any(args.mix[name] for name in MIX_SOURCES[1:]) and "mix" not in args.batch:
        parser.error("--mix shares out the mix windows, and --batch has none")
