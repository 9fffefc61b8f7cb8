"""How batch size decides whether an induction head forms: a small GPT-2 trained only on repeated
random windows (`gpt2.train.copy_batch`) over the most frequent Shakespeare tokens.

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

from gpt2.analysis import induction_probe  # noqa: E402
from gpt2.config import GPT2Config  # noqa: E402
from gpt2.model import GPT2  # noqa: E402
from gpt2.train import copy_batch, frequent_tokens, lm_loss, read_corpus, split_tokens  # noqa: E402


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


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    train_ids = split_tokens(read_corpus(None)).train
    pool = frequent_tokens(train_ids, args.pool_size)
    config = GPT2Config(
        vocab_size=50257,
        num_layers=args.num_layers,
        num_heads=4,
        embed_dim=128,
        block_size=max(args.seq_len, 100),
        dropout_p=0.0,
    )
    model = GPT2.from_config(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    data_rng = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        idx, targets = copy_batch(pool, args.windows, args.seq_len, data_rng)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = lm_loss(model, idx, targets, pool)  # over the pool's logits only
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % args.every == 0 or step == args.steps:
            model.eval()
            induction = induction_probe(model, pool, seeds=(0, 1)).max().item()
            model.train()
            minutes = (time.perf_counter() - start) / 60
            print(
                f"step {step}: loss {loss.item():.3f}, best induction score {induction:.3f}, {minutes:.1f} min",
                flush=True,
            )


if __name__ == "__main__":
    main()
