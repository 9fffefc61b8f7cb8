"""What a training run's history costs: one evaluation with the history's probes (per-token
validation losses for the in-context-learning score, and every head's scores on the probe batch)
against the validation pass the trainer made before histories, and against a training step, on the
bundled recipe's shape (random weights). The three take turns, so slow spells hit each alike;
medians are printed, and the overhead per evaluation interval.

    python bench/history_cost.py [--eval-windows 24 --eval-interval 50]
    python bench/history_cost.py --quick    # a tiny model, two turns: checks that it runs
"""

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gpt2 import GPT2  # noqa: E402
from gpt2.config import PRESETS, VOCAB_SIZE  # noqa: E402
from gpt2.curriculum import lm_loss  # noqa: E402
from gpt2.heads.roles import BATCH, LENGTH, repeated_sequences  # noqa: E402
from gpt2.history import Probe, measure  # noqa: E402
from gpt2.loss import chunked_cross_entropy  # noqa: E402
from gpt2.precision import autocast_dtype  # noqa: E402
from gpt2.train import make_optimizer  # noqa: E402


@torch.inference_mode()
def validation_before_histories(model, tokens, block_size: int, windows: int) -> float:
    """The trainer's validation pass before histories: the mean chunked loss, 16 windows at a time."""
    model.eval()
    inputs = tokens[: windows * block_size].view(windows, block_size)
    targets = tokens[1 : windows * block_size + 1].view(windows, block_size)
    total = 0.0
    for start in range(0, windows, 16):
        hidden = model(inputs[start : start + 16], return_hidden=True)
        total += chunked_cross_entropy(hidden, model.lm_head.weight, targets[start : start + 16]).item() * len(hidden)
    return total / windows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="shakespeare")
    p.add_argument("--batch-size", type=int, default=16, help="windows of block_size tokens in a training step")
    p.add_argument("--eval-windows", type=int, default=24)
    p.add_argument("--eval-interval", type=int, default=50, help="steps per evaluation, for the overhead")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        vars(args).update(preset="tiny", batch_size=2, eval_windows=2, repeats=2)
    return args


def main(argv=None) -> dict:
    """Returns the medians in seconds: {"step", "validation before", "evaluation with history", "of which the probes"}."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = PRESETS[args.preset]
    model = GPT2.from_config(config)
    block = config.block_size
    optimizer = make_optimizer(model, 1e-3, 0.1)
    x = torch.randint(0, VOCAB_SIZE, (args.batch_size, block))
    y = torch.randint(0, VOCAB_SIZE, (args.batch_size, block))
    val_tokens = torch.randint(0, VOCAB_SIZE, (args.eval_windows * block + 1,))
    probe = Probe(repeated_sequences(torch.arange(1000, 1500), BATCH, min(LENGTH, block // 2)))
    amp = autocast_dtype("auto", torch.device("cpu"))

    def step():
        model.train()
        with torch.autocast("cpu", dtype=amp) if amp else nullcontext():
            loss = lm_loss(model, x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    turns = {
        "step": step,
        "validation before": lambda: validation_before_histories(model, val_tokens, block, args.eval_windows),
        "evaluation with history": lambda: measure(model, val_tokens, block, probe, args.eval_windows),
        "of which the probes": lambda: probe.head_scores(model),
    }
    times = {name: [] for name in turns}
    for fn in turns.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for name, fn in turns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"{args.preset}: {model.num_parameters():,} parameters; step of {args.batch_size} x {block} tokens "
        f"({'bf16 autocast' if amp else 'float32'}); {args.eval_windows} validation windows; "
        f"{torch.get_num_threads()} threads; medians of {args.repeats}"
    )
    for name, median in medians.items():
        print(f"{name:26s} {median * 1000:8.0f} ms")
    extra = medians["evaluation with history"] - medians["validation before"]
    interval = args.eval_interval * medians["step"]
    print(
        f"the history adds {extra * 1000:.0f} ms per evaluation: {100 * extra / interval:.1f}% of "
        f"{args.eval_interval} steps; the whole evaluation is {100 * medians['evaluation with history'] / interval:.1f}%, "
        f"the probes {100 * medians['of which the probes'] / interval:.2f}%"
    )
    return medians


if __name__ == "__main__":
    main()
