"""Train a GPT-2 on a text file: `python -m gpt2.train --data input.txt --out DIR`.

The text is tokenized with GPT-2's tokenizer; the first 90% of the token stream trains and the last
10% validates. AdamW (weight decay on matrices only), linear warmup then cosine decay, gradient
clipping and accumulation, periodic validation, checkpoint + resume, and the result saved in Hugging
Face's GPT-2 layout. Under `torchrun --nproc_per_node=N` it trains with DistributedDataParallel.
"""

import argparse
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .config import PRESETS, VOCAB_SIZE, GPT2Config
from .data import frequent_tokens, random_distinct_tokens, read_corpus, split_tokens, token_pool
from .loss import chunked_cross_entropy, pool_cross_entropy, validation_loss
from .model import GPT2
from .precision import autocast_dtype, default_device
from .weights import ModelLoadError

STATE_FILE = "train_state.pt"
HISTORY_FILE = "history.json"

def sample_batch(
    tokens: torch.Tensor,
    batch_size: int,
    block_size: int,
    generator: torch.Generator,
    repeat_fraction: float = 0.0,
    synthetic_fraction: float = 0.0,
    pool: torch.Tensor | None = None,
    lagged_fraction: float = 0.0,
    lagged_pool: torch.Tensor | None = None,
):
    """Random windows: inputs (B, T) and next-token targets (B, T).

    With `repeat_fraction`, that share of the windows holds a stretch of text followed by the same
    stretch again: text that rewards copying from context, which is what induction heads do.
    With `synthetic_fraction`, that share instead holds a run of distinct random tokens from `pool`
    repeated to fill the window (see `repeated_random_window`); with `lagged_fraction`, another
    share holds lagged-copy windows of `lagged_pool` tokens (see `lagged_copy_windows`).
    """
    starts = torch.randint(len(tokens) - block_size - 1, (batch_size,), generator=generator)
    offsets = torch.arange(block_size + 1)
    windows = tokens[starts[:, None] + offsets]  # (B, T + 1)
    if repeat_fraction > 0:
        repeat = torch.rand(batch_size, generator=generator) < repeat_fraction
        half = (block_size + 2) // 2
        windows[repeat] = windows[repeat, :half].repeat(1, 2)[:, : block_size + 1]
    if synthetic_fraction > 0 or lagged_fraction > 0:
        kind = torch.rand(batch_size, generator=generator)  # below synthetic_fraction: synthetic; next: lagged
        for row in (kind < synthetic_fraction).nonzero().flatten().tolist():
            windows[row] = repeated_random_window(pool, block_size + 1, generator)
        lagged = (kind >= synthetic_fraction) & (kind < synthetic_fraction + lagged_fraction)
        if lagged.any():
            windows[lagged] = lagged_copy_windows(lagged_pool, int(lagged.sum()), block_size + 1, generator)
    return windows[:, :-1], windows[:, 1:]


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


def repeated_random_window(pool: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """`length` tokens: a run of 8 to length // 2 distinct tokens from `pool`, repeated. Only the first
    run is unpredictable; after it every token is predictable by attending to what followed the
    earlier copy of the current token, so these windows reward induction heads and nothing else."""
    longest = min(length // 2, pool.numel())
    run = int(torch.randint(min(8, longest), longest + 1, (1,), generator=generator))
    return random_distinct_tokens(pool, run, generator).repeat(length // run + 1)[:length]


def lm_loss(model, idx, targets, pool: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy, through the chunked head (no full logits kept); with `pool`,
    over those tokens' logits only."""
    hidden = model(idx, return_hidden=True)
    head = model.module if isinstance(model, DistributedDataParallel) else model
    if pool is not None:
        return pool_cross_entropy(hidden, head.lm_head.weight, targets, pool)
    return chunked_cross_entropy(hidden, head.lm_head.weight, targets)


def copy_batch(pool: torch.Tensor, windows: int, length: int, generator: torch.Generator):
    """Inputs and targets (windows, length) of repeated random runs of `pool` tokens (see
    `repeated_random_window`), for a loss over the pool's logits only."""
    rows = torch.stack([repeated_random_window(pool, length + 1, generator) for _ in range(windows)])
    return rows[:, :-1], rows[:, 1:]


def learning_rate(step: int, args) -> float:
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = min(1.0, (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps))
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: GPT2, args) -> torch.optim.AdamW:
    keep = {id(model.wpe.weight)} if args.position_init == "helix" else set()  # a helix keeps its scale
    matrices = [p for p in model.parameters() if p.dim() >= 2 and id(p) not in keep]  # weights, embeddings decay
    vectors = [p for p in model.parameters() if p.dim() < 2 or id(p) in keep]  # biases, LayerNorm gains do not
    groups = [{"params": matrices, "weight_decay": args.weight_decay}, {"params": vectors, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8)


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device); initializes the process group under torchrun."""
    if "RANK" not in os.environ:
        return 0, 1, default_device()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if backend == "nccl":
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        return rank, world, torch.device("cuda", local_rank)
    return rank, world, torch.device("cpu")


def build_config(args) -> GPT2Config:
    preset = PRESETS[args.preset].to_dict() if args.preset else {}
    fields = {
        name: getattr(args, name) if getattr(args, name) is not None else preset.get(name)
        for name in ("num_layers", "num_heads", "embed_dim", "block_size")
    }
    missing = [name for name, value in fields.items() if value is None]
    if missing:
        raise SystemExit(f"error: give --preset or --{missing[0].replace('_', '-')}")
    return GPT2Config(vocab_size=VOCAB_SIZE, dropout_p=args.dropout, **fields)


def train(args) -> None:
    rank, world, device = setup_distributed()
    is_main = rank == 0
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    split = split_tokens(read_corpus(args.data))
    config = build_config(args)
    out = Path(args.out)
    state_path = out / STATE_FILE

    model = GPT2.from_config(config).to(device)
    if args.init_from:  # start from another checkpoint's weights, with a fresh optimizer and schedule
        model.load_state_dict(GPT2.from_pretrained(args.init_from).state_dict())
    elif args.position_init == "helix":
        with torch.no_grad():
            model.wpe.weight.copy_(helix_positions(config.block_size, config.embed_dim))
    seq_len = args.seq_len or config.block_size
    if not 1 < seq_len <= config.block_size:
        raise SystemExit(f"error: --seq-len must be between 2 and the block size {config.block_size}")
    if args.copy_windows and args.copy_seq_len > config.block_size:
        raise SystemExit(f"error: --copy-seq-len must be at most the block size {config.block_size}")
    optimizer = make_optimizer(model, args)
    pool = token_pool(split.train) if args.synthetic_fraction > 0 else None
    if pool is not None and pool.numel() < 8:
        raise SystemExit(
            "error: --synthetic-fraction needs at least 8 distinct tokens seen 5 times in the training text"
        )
    lagged_pool = frequent_tokens(split.train) if args.lagged_fraction > 0 else None
    copy_pool = None
    if args.copy_windows:
        copy_pool = (
            frequent_tokens(split.train, args.copy_pool_size) if args.copy_pool_size else token_pool(split.train)
        )
    start_step = 0
    data_rng = torch.Generator().manual_seed(args.seed)  # same on every rank: each takes its slice of one global batch
    if args.resume and state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        data_rng.set_state(state["data_rng"])
        torch.set_rng_state(state["torch_rng"])
        start_step = state["step"]
        if is_main:
            print(f"resumed from {state_path} at step {start_step}", file=sys.stderr)

    ddp_model = DistributedDataParallel(model) if world > 1 else model
    amp_dtype = autocast_dtype(args.dtype, device)
    global_batch = args.batch_size * world
    text_rows = slice(rank * args.batch_size, (rank + 1) * args.batch_size)  # this process's share
    copy_rows = slice(rank * args.copy_windows, (rank + 1) * args.copy_windows)
    tokens_per_step = (global_batch * seq_len + args.copy_windows * world * args.copy_seq_len) * args.grad_accum
    if is_main:
        print(
            f"{model.num_parameters():,} parameters; {len(split.train):,} train / {len(split.val):,} val tokens; "
            f"{tokens_per_step:,} tokens per step on {world} process(es); compute {amp_dtype or torch.float32}",
            file=sys.stderr,
        )

    progress = tqdm(
        range(start_step, args.max_steps),
        initial=start_step,
        total=args.max_steps,
        disable=not is_main,
        dynamic_ncols=True,
    )
    history_path = out / HISTORY_FILE
    history = json.loads(history_path.read_text()) if args.resume and history_path.is_file() else []
    started = time.perf_counter()
    for step in progress:
        lr = learning_rate(step, args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        step_loss = torch.zeros((), device=device)
        for micro in range(args.grad_accum):
            text = copies = None  # each (inputs, targets) of the global batch; drawn in this order
            if args.batch_size:  # 0: copy windows only
                text = sample_batch(
                    split.train,
                    global_batch,
                    seq_len,
                    data_rng,
                    args.repeat_fraction,
                    args.synthetic_fraction,
                    pool,
                    args.lagged_fraction,
                    lagged_pool,
                )
            if copy_pool is not None:
                copies = copy_batch(copy_pool, args.copy_windows * world, args.copy_seq_len, data_rng)
            sync = nullcontext() if (world == 1 or micro == args.grad_accum - 1) else ddp_model.no_sync()
            autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
            with sync:  # only the last micro-step all-reduces the accumulated gradients
                with autocast:
                    loss = torch.zeros((), device=device)
                    if text is not None:
                        loss = loss + lm_loss(ddp_model, *(t[text_rows].to(device) for t in text))
                    if copies is not None:
                        loss = loss + lm_loss(ddp_model, *(t[copy_rows].to(device) for t in copies), copy_pool)
                    loss = loss / args.grad_accum
                loss.backward()
            step_loss += loss.detach()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        elapsed = time.perf_counter() - started
        out_of_time = bool(args.time_limit and elapsed > args.time_limit * 60) or step + 1 == args.stop_at_step
        if world > 1:  # every rank logs the global mean loss and stops at the same step
            dist.all_reduce(step_loss, op=dist.ReduceOp.AVG)
            flag = torch.tensor(float(out_of_time), device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            out_of_time = bool(flag.item())
        train_loss = step_loss.item()
        done_tokens = (step + 1 - start_step) * tokens_per_step
        progress.set_postfix(loss=f"{train_loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{done_tokens / elapsed:,.0f}")
        last = step + 1 == args.max_steps or out_of_time
        if last and world > 1:
            check_in_sync(model)
            if is_main:
                progress.write(f"all {world} processes hold identical weights")
        if is_main and (last or (args.eval_interval and (step + 1) % args.eval_interval == 0)):
            val = validation_loss(model, split.val, config.block_size, max_windows=args.eval_windows)
            history.append(
                dict(
                    step=step + 1,
                    tokens=(step + 1) * tokens_per_step,
                    train_loss=train_loss,
                    val_loss=val,
                    minutes=elapsed / 60,
                )
            )
            progress.write(f"step {step + 1}: train loss {train_loss:.4f}, val loss {val:.4f}, {elapsed / 60:.1f} min")
            save_checkpoint(model, optimizer, data_rng, step + 1, out, args)
            history_path.write_text(json.dumps(history, indent=1) + "\n")
        if out_of_time:
            if is_main:
                progress.write(f"stopping at step {step + 1} (--time-limit or --stop-at-step); --resume continues")
            break
    if world > 1:
        dist.destroy_process_group()


def check_in_sync(model: GPT2) -> None:
    """Raise if the processes' weights differ (DDP keeps them equal by averaging every gradient)."""
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    drift = max((g - flat).abs().max().item() for g in gathered)
    if drift > 0:
        raise RuntimeError(f"processes drifted apart: max weight difference {drift:.3g}")


def save_checkpoint(model, optimizer, data_rng, step, out: Path, args) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.save_dtype]
    model.save_pretrained(out, dtype=save_dtype)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "data_rng": data_rng.get_state(),
        "torch_rng": torch.get_rng_state(),
        "step": step,
    }
    torch.save(state, out / (STATE_FILE + ".tmp"))
    os.replace(out / (STATE_FILE + ".tmp"), out / STATE_FILE)


def eval_only(args) -> None:
    try:
        model = GPT2.from_pretrained(args.model or args.out)
    except ModelLoadError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    split = split_tokens(read_corpus(args.data))
    block_size = args.block_size or model.config.block_size
    val = validation_loss(model, split.val, block_size, max_windows=args.eval_windows)
    print(f"validation loss: {val:.4f} nats/token over {len(split.val):,} held-out tokens (windows of {block_size})")


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m gpt2.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data", help="UTF-8 text file to train on (default: ../shared/data/tinyshakespeare.txt, else downloaded)"
    )
    p.add_argument(
        "--out", default="out/shakespeare", help="output directory: config.json, model.safetensors, train_state.pt"
    )
    p.add_argument("--preset", choices=sorted(PRESETS), help="named model size; the flags below override it")
    p.add_argument("--num-layers", type=int)
    p.add_argument("--num-heads", type=int)
    p.add_argument("--embed-dim", type=int)
    p.add_argument("--block-size", type=int, help="context length in tokens")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument(
        "--seq-len", type=int, help="training window length, at most the block size (default: the block size)"
    )
    p.add_argument("--init-from", help="start from this checkpoint's weights (fresh optimizer and schedule)")
    p.add_argument(
        "--repeat-fraction",
        type=fraction,
        default=0.0,
        help="share of training windows made of a text stretch repeated twice",
    )
    p.add_argument(
        "--synthetic-fraction",
        type=fraction,
        default=0.0,
        help="share of training windows made of a run of random tokens repeated (rewards induction heads)",
    )
    p.add_argument(
        "--lagged-fraction",
        type=fraction,
        default=0.0,
        help="share of training windows of frequent random tokens, each half the time a copy of the one two "
        "back (rewards previous-token heads)",
    )
    p.add_argument(
        "--copy-windows",
        type=int,
        default=0,
        help="extra windows per step (and process) of a random run of tokens repeated, their loss over the "
        "pool's logits only: cheap enough to add many, which is what starts induction heads",
    )
    p.add_argument(
        "--copy-pool-size",
        type=int,
        default=500,
        help="the copy windows draw from this many most frequent training tokens (0: every token seen 5 times)",
    )
    p.add_argument("--copy-seq-len", type=int, default=64, help="length of the copy windows")
    p.add_argument(
        "--position-init",
        choices=("gpt2", "helix"),
        default="gpt2",
        help="positional embeddings: GPT-2's random init, or a helix (one rotation maps each position to the "
        "next; kept out of weight decay)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="text windows per process per micro-step (0 with --copy-windows: copy windows only)",
    )
    p.add_argument("--grad-accum", type=int, default=1, help="micro-steps per optimizer step")
    p.add_argument("--max-steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--min-lr", type=float, default=1e-4, help="learning rate at the end of the cosine decay")
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--eval-interval", type=int, default=250, help="steps between validation passes and checkpoints")
    p.add_argument("--eval-windows", type=int, help="cap on validation windows per pass (default: the whole split)")
    p.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="compute dtype; auto picks bf16 only where it is faster",
    )
    p.add_argument("--save-dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--time-limit", type=float, help="stop (and save) after this many minutes")
    p.add_argument(
        "--stop-at-step", type=int, help="stop (and save) after this step; the schedule still spans --max-steps"
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt if it exists")
    p.add_argument("--eval-only", action="store_true", help="print the validation loss of --model (or --out) on --data")
    p.add_argument("--model", help="checkpoint directory or Hub name for --eval-only")
    args = p.parse_args(argv)
    if args.batch_size < 0 or (args.batch_size == 0 and not args.copy_windows):
        p.error("--batch-size must be at least 1, or 0 with --copy-windows (copy windows only)")
    if args.copy_windows < 0 or args.copy_pool_size < 0 or args.copy_seq_len < 2:
        p.error("--copy-windows and --copy-pool-size must be at least 0, --copy-seq-len at least 2")
    if args.synthetic_fraction + args.lagged_fraction > 1:
        p.error("--synthetic-fraction and --lagged-fraction add up to more than 1")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.eval_only:
        eval_only(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
