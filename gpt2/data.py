"""Token data that training and analysis both draw on: the corpus and its split, token pools, and
random token sequences.

The split convention: the first 90% of a text's GPT-2 token stream trains, the last 10% validates.
"""

import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import VOCAB_SIZE
from .tokenizer import get_tokenizer

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
# the project's shared copy of the corpus, beside the repository (never committed)
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tinyshakespeare.txt"


@dataclass
class Split:
    train: torch.Tensor  # (N_train,) token ids
    val: torch.Tensor  # (N_val,)


def read_corpus(path: str | Path | None) -> str:
    """The training text: the given file, the project's shared copy, or (online) a fresh download."""
    if path:
        return Path(path).read_text(encoding="utf-8")
    if DEFAULT_DATA.is_file():
        return DEFAULT_DATA.read_text(encoding="utf-8")
    print(f"downloading the corpus from {SHAKESPEARE_URL}", file=sys.stderr)
    with urllib.request.urlopen(SHAKESPEARE_URL, timeout=30) as response:
        return response.read().decode("utf-8")


def split_tokens(text: str, val_fraction: float = 0.1) -> Split:
    ids = torch.tensor(get_tokenizer().encode(text), dtype=torch.long)
    n_train = int(len(ids) * (1 - val_fraction))
    return Split(ids[:n_train], ids[n_train:])


def token_pool(train_ids: torch.Tensor, min_count: int = 5) -> torch.Tensor:
    """Tokens seen at least `min_count` times in training: the tokens a model can learn to match."""
    counts = torch.bincount(train_ids, minlength=VOCAB_SIZE)
    return (counts >= min_count).nonzero().flatten()


def frequent_tokens(train_ids: torch.Tensor, count: int = 500) -> torch.Tensor:
    """The `count` most frequent training tokens, whose embeddings grow far apart early in training."""
    return torch.bincount(train_ids, minlength=VOCAB_SIZE).argsort(descending=True)[:count]


def random_distinct_tokens(pool: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` tokens drawn at random without replacement from `pool`, a tensor of distinct tokens
    (all of them, shuffled, if it holds fewer)."""
    return pool[torch.randperm(pool.numel(), generator=generator)[:count]]


def random_repeated_tokens(length: int, pool, seed: int = 0) -> torch.Tensor:
    """A random sequence of `length` distinct tokens drawn from `pool`, then the same sequence again:
    the text on which induction heads are measured."""
    pool = torch.as_tensor(pool).unique()
    if pool.numel() < length:
        raise ValueError(f"the pool has {pool.numel()} tokens, fewer than {length}")
    first = random_distinct_tokens(pool, length, torch.Generator().manual_seed(seed))
    return torch.cat([first, first])
