"""Training throughput: our step (chunked tied-head loss, plus bfloat16 autocast where `train.py`
uses it: CPUs with AMX/AVX512-BF16, and CUDA) vs a plain nanoGPT-style step (full float32 logits,
then F.cross_entropy), same model and batch, measured side by side in one process.

    python bench/train_speed.py [--embed-dim 128 --num-layers 6 --num-heads 4 --block-size 256 --batch-size 16]
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
from gpt2.train import autocast_dtype, lm_loss, make_optimizer  # noqa: E402


def plain_loss(model, x, y):
    logits = model(x)  # (B, T, V) float32, all of it kept for backward
    return F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))


def autocast_loss(dtype):
    def loss_fn(model, x, y):
        with torch.autocast("cpu", dtype=dtype):
            return lm_loss(model, x, y)

    return loss_fn


def time_steps(model, optimizer, loss_fn, x, y, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats + 1):  # the first step warms up
        start = time.perf_counter()
        loss = loss_fn(model, x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times[1:]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embed-dim", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=6)
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    opt_args = argparse.Namespace(lr=1e-3, weight_decay=0.1)
    torch.manual_seed(0)
    model = GPT2(50257, args.embed_dim, args.num_heads, args.num_layers, args.block_size).train()
    optimizer = make_optimizer(model, opt_args)
    x = torch.randint(0, 50257, (args.batch_size, args.block_size))
    y = torch.randint(0, 50257, (args.batch_size, args.block_size))
    tokens = x.numel()
    results = {}
    # Interleave the variants so that machine noise hits each alike.
    variants = [("plain (fp32 logits + cross_entropy)", plain_loss), ("ours (chunked head loss)", lm_loss)]
    amp_dtype = autocast_dtype("auto", torch.device("cpu"))
    if amp_dtype is not None:
        variants.append(("ours + bf16 autocast (train.py's default here)", autocast_loss(amp_dtype)))
    else:
        print("this CPU has no AMX/AVX512-BF16: train.py trains in float32 here, as 'ours' does")
    for _ in range(2):
        for name, fn in variants:
            results.setdefault(name, []).extend(time_steps(model, optimizer, fn, x, y, args.repeats))
    print(
        f"model: {args.num_layers} layers x {args.num_heads} heads, {args.embed_dim} wide, {model.num_parameters():,} params; "
        f"batch {args.batch_size} x {args.block_size} tokens; {torch.get_num_threads()} threads"
    )
    medians = {name: statistics.median(t) for name, t in results.items()}
    base = medians["plain (fp32 logits + cross_entropy)"]
    for name, med in medians.items():
        print(f"{name:40s} {tokens / med:10,.0f} tokens/s  (median step {med * 1000:.0f} ms, {base / med:.2f}x plain)")


if __name__ == "__main__":
    main()
