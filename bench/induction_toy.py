"""How batch size decides whether an induction head forms: a small GPT-2 trained only on repeated
random windows (`gpt2.curriculum.copy_batch`, what `gpt2.train --batch copy=N` trains on) over the
most frequent Shakespeare tokens.

    python bench/induction_toy.py --windows 256 --steps 200    # forms one (0.52 at step 200 here)
    python bench/induction_toy.py --windows 32 --steps 400     # stays at chance

The loss is taken over the pool's tokens only (the other 49,757 logits are never computed), which
makes a 16k-token step cheap enough to try. Every `--every` steps it prints the training loss and the
best head's induction score on random sequences of pool tokens repeated twice. A window's first run
of tokens cannot be predicted, so perfect copying still leaves a loss of about 2.0 nats.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpt2.analysis import analyze  # noqa: E402
from gpt2.config import VOCAB_SIZE, GPT2Config  # noqa: E402
from gpt2.curriculum import copy_batch, lm_loss  # noqa: E402
from gpt2.data import frequent_tokens, random_repeated_tokens, read_corpus, split_tokens  # noqa: E402
from gpt2.model import GPT2  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=256, help="windows per step")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--pool-size", type=int, default=500, help="the most frequent training tokens")
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def best_induction_score(model, pool, length: int = 50, seeds=(0, 1)) -> float:
    """The best head's induction score, averaged over random sequences of `pool` tokens repeated
    twice (what `gpt2.probes.induction_probe` measures)."""
    runs = [analyze(model, random_repeated_tokens(length, pool, seed)).scores["induction"] for seed in seeds]
    return torch.stack(runs).mean(0).max().item()


def toy_model(args) -> GPT2:
    """A fresh model from torch's global generator: 4 heads, 128 wide, `--num-layers` deep."""
    block_size = max(args.seq_len, 100)  # the probe's sequences are 100 tokens
    config = GPT2Config(VOCAB_SIZE, embed_dim=128, num_heads=4, num_layers=args.num_layers, block_size=block_size)
    return GPT2.from_config(config)


def main(argv=None) -> list[dict]:
    """Train and print; returns each printed step's {"step", "loss", "induction"}."""
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    train_ids = split_tokens(read_corpus(None)).train
    pool = frequent_tokens(train_ids, args.pool_size)
    model = toy_model(args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    data_rng = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    history = []
    for step in range(1, args.steps + 1):
        idx, targets = copy_batch(pool, args.windows, args.seq_len, data_rng)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = lm_loss(model, idx, targets, pool)  # over the pool's logits only
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % args.every == 0 or step == args.steps:
            model.eval()
            induction = best_induction_score(model, pool)
            model.train()
            history.append(dict(step=step, loss=loss.item(), induction=induction))
            minutes = (time.perf_counter() - start) / 60
            print(
                f"step {step}: loss {loss.item():.3f}, best induction score {induction:.3f}, {minutes:.1f} min",
                flush=True,
            )
    return history


if __name__ == "__main__":
    main()
