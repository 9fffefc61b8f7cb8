"""Training throughput: our step (chunked tied-head loss, plus bfloat16 autocast where `train.py`
uses it: CPUs with AMX/AVX512-BF16, and CUDA) vs a plain nanoGPT-style step (full float32 logits,
then F.cross_entropy), same model and batch, in one process. The variants take turns step by step,
so that slow spells of the machine hit each alike; each prints its median step.

    python bench/train_speed.py [--embed-dim 128 --num-layers 6 --num-heads 4 --block-size 256 --batch-size 16]
    python bench/train_speed.py --quick    # two tiny steps per variant: checks that it runs, measures nothing
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gpt2 import GPT2  # noqa: E402
from gpt2.config import VOCAB_SIZE  # noqa: E402
from gpt2.curriculum import lm_loss  # noqa: E402
from gpt2.precision import autocast_dtype  # noqa: E402
from gpt2.train import make_optimizer  # noqa: E402

PLAIN = "plain (fp32 logits + cross_entropy)"
QUICK = dict(embed_dim=32, num_layers=2, num_heads=2, block_size=32, batch_size=2, repeats=2)


def plain_loss(model, x, y):
    logits = model(x)  # (B, T, V) float32, all of it kept for backward
    return F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))


def autocast_loss(dtype):
    def loss_fn(model, x, y):
        with torch.autocast("cpu", dtype=dtype):
            return lm_loss(model, x, y)

    return loss_fn


def timed_step(model, optimizer, loss_fn, x, y) -> float:
    start = time.perf_counter()
    loss = loss_fn(model, x, y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embed-dim", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=6)
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=8, help="timed steps per variant (after one warm-up step each)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="a tiny model and two steps per variant")
    args = p.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK)
    return args


def main(argv=None) -> dict:
    """Run the benchmark; returns {variant: {"tokens_s", "median_s", "vs_plain"}}."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT2(VOCAB_SIZE, args.embed_dim, args.num_heads, args.num_layers, args.block_size).train()
    optimizer = make_optimizer(model, lr=1e-3, weight_decay=0.1)
    x = torch.randint(0, VOCAB_SIZE, (args.batch_size, args.block_size))
    y = torch.randint(0, VOCAB_SIZE, (args.batch_size, args.block_size))
    variants = {PLAIN: plain_loss, "ours (chunked head loss)": lm_loss}
    amp_dtype = autocast_dtype("auto", torch.device("cpu"))
    if amp_dtype is not None:
        variants["ours + bf16 autocast (train.py's default here)"] = autocast_loss(amp_dtype)
    else:
        print("this CPU has no AMX/AVX512-BF16: train.py trains in float32 here, as 'ours' does")
    times = {name: [] for name in variants}
    for fn in variants.values():  # one warm-up step each
        timed_step(model, optimizer, fn, x, y)
    for _ in range(args.repeats):
        for name, fn in variants.items():
            times[name].append(timed_step(model, optimizer, fn, x, y))
    print(
        f"model: {args.num_layers} layers x {args.num_heads} heads, {args.embed_dim} wide, {model.num_parameters():,} "
        f"params; batch {args.batch_size} x {args.block_size} tokens; {torch.get_num_threads()} threads; "
        f"medians of {args.repeats} steps"
    )
    medians = {name: statistics.median(t) for name, t in times.items()}
    results = {}
    for name, median in medians.items():
        tokens_s, ratio = x.numel() / median, medians[PLAIN] / median
        results[name] = dict(tokens_s=tokens_s, median_s=median, vs_plain=ratio)
        print(f"{name:48s} {tokens_s:10,.0f} tokens/s  (median step {median * 1000:.0f} ms, {ratio:.2f}x plain)")
    return results


if __name__ == "__main__":
    main()
