"""Train a GPT-2 on a text file: `python -m gpt2.train --data input.txt --out DIR`.

The text is tokenized with GPT-2's tokenizer; the first 90% of the token stream trains and the last
10% validates. AdamW (weight decay on matrices only), linear warmup then cosine decay, gradient
clipping and accumulation, periodic validation, checkpoint + resume, and the result saved in Hugging
Face's GPT-2 layout. Under `torchrun --nproc_per_node=N` it trains with DistributedDataParallel.
What a step's batch holds (`--batch`, `--mix`) is `gpt2.curriculum`'s. `--recipe NAME --stage S`
reads a stage's flags from gpt2/recipes/NAME.toml (`gpt2.recipes`); flags given here override them.
"""

import argparse
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

from . import curriculum, history, recipes
from .config import PRESETS, VOCAB_SIZE, GPT2Config
from .data import read_corpus, split_tokens
from .loss import validation_loss
from .model import GPT2
from .precision import autocast_dtype, default_device
from .weights import ModelLoadError

STATE_FILE = "train_state.pt"  # model, optimizer, step and both random generators, for --resume
SAVE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def learning_rate(step: int, args) -> float:
    """Linear warmup to --lr, then a cosine down to --min-lr at --max-steps."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = min(1.0, (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps))
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: GPT2, lr: float, weight_decay: float, no_decay=()) -> torch.optim.AdamW:
    """AdamW that decays the weight matrices and embeddings; biases, LayerNorm gains and the
    parameters in `no_decay` keep their scale."""
    keep = {id(p) for p in no_decay}
    decayed = [p for p in model.parameters() if p.dim() >= 2 and id(p) not in keep]
    kept = [p for p in model.parameters() if p.dim() < 2 or id(p) in keep]
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": kept, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)


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


def agree(step_loss: torch.Tensor, stop: bool, world: int) -> tuple[float, bool]:
    """The step's loss averaged over the processes, and whether any of them stops (then all do)."""
    if world > 1:
        dist.all_reduce(step_loss, op=dist.ReduceOp.AVG)
        flag = torch.tensor(float(stop), device=step_loss.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop = bool(flag.item())
    return step_loss.item(), stop


def check_in_sync(model: GPT2) -> None:
    """Raise if the processes' weights differ (DDP keeps them equal by averaging every gradient)."""
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    drift = max((g - flat).abs().max().item() for g in gathered)
    if drift > 0:
        raise RuntimeError(f"processes drifted apart: max weight difference {drift:.3g}")


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


def build_model(args, config: GPT2Config, device: torch.device) -> GPT2:
    """A fresh model from torch's global generator, or --init-from's weights (with a fresh optimizer
    and schedule)."""
    model = GPT2.from_config(config).to(device)
    if args.init_from:
        model.load_state_dict(GPT2.from_pretrained(args.init_from).state_dict())
    else:
        curriculum.init_positions(model, args.position_init)
    return model


def save_checkpoint(model, optimizer, data_rng, step: int, out: Path, save_dtype: torch.dtype, start) -> None:
    """config.json + model.safetensors (Hugging Face's layout), and train_state.pt for --resume
    (with `start`, where the history's steps and tokens begin)."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, dtype=save_dtype)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "data_rng": data_rng.get_state(),
        "torch_rng": torch.get_rng_state(),
        "step": step,
        "history_start": start,
    }
    torch.save(state, out / (STATE_FILE + ".tmp"))
    os.replace(out / (STATE_FILE + ".tmp"), out / STATE_FILE)  # a crash mid-write leaves the old state


def load_checkpoint(path: Path, model, optimizer, data_rng, device) -> tuple[int, dict]:
    """Restore what `save_checkpoint` wrote; returns the step to continue from and the history's start."""
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    data_rng.set_state(state["data_rng"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state.get("history_start", {"step": 0, "tokens": 0})


def start_history(args, out: Path) -> tuple[list[dict], dict]:
    """A fresh run's first rows and where its own steps and tokens start: the rows of --init-from's
    history, if it has one, which this run's steps follow on from."""
    source = args.init_from and Path(args.init_from)
    rows = history.rows_up_to(source) if source and source.is_dir() else []
    start = {"step": rows[-1]["step"], "tokens": rows[-1]["tokens"]} if rows else {"step": 0, "tokens": 0}
    return rows, start


def keep_snapshot(model, step: int, out: Path, args) -> None:
    """At every --snapshot-every steps (of the history's count), the weights in float16."""
    if args.snapshot_every and step % args.snapshot_every == 0:
        model.save_pretrained(history.snapshot_dir(out, step), dtype=torch.float16)


def train(args) -> None:
    rank, world, device = setup_distributed()
    is_main = rank == 0
    torch.manual_seed(args.seed)  # the model's init and dropout draw from torch's global generator
    if args.threads:
        torch.set_num_threads(args.threads)
    split = split_tokens(read_corpus(args.data))
    config = build_config(args)
    batches = curriculum.Curriculum.from_args(args, split.train, config.block_size, world)
    model = build_model(args, config, device)
    no_decay = curriculum.fixed_scale_params(model, args.position_init)
    optimizer = make_optimizer(model, args.lr, args.weight_decay, no_decay)
    data_rng = torch.Generator().manual_seed(args.seed)  # the same on every rank: each takes its rows of one batch
    out = Path(args.out)
    start_step, resumed = 0, args.resume and (out / STATE_FILE).is_file()
    if resumed:
        start_step, start = load_checkpoint(out / STATE_FILE, model, optimizer, data_rng, device)
        rows = history.rows_up_to(out, start["step"] + start_step)  # drop rows recorded after the checkpoint
        if is_main:
            print(f"resumed from {out / STATE_FILE} at step {start_step}", file=sys.stderr)
    else:
        rows, start = start_history(args, out)
    probe = history.Probe.for_run(split.train, config.block_size)

    ddp_model = DistributedDataParallel(model) if world > 1 else model
    amp_dtype = autocast_dtype(args.dtype, device)
    tokens_per_step = batches.tokens_per_draw * args.grad_accum
    if is_main:
        if args.recipe:
            print(f"recipe {args.recipe}, stage {args.stage}: {' '.join(args.recipe_flags)}", file=sys.stderr)
        print(
            f"{model.num_parameters():,} parameters; {len(split.train):,} train / {len(split.val):,} val tokens; "
            f"{batches.describe()}; {tokens_per_step:,} tokens per step on {world} process(es); "
            f"compute {amp_dtype or torch.float32}",
            file=sys.stderr,
        )
    if is_main:
        history.write_history(out, rows)
        probe.save(out)
        if not rows and not resumed:  # a fresh run records where it starts
            measured = history.measure(model, split.val, config.block_size, probe, args.eval_windows)
            history.append_row(out, dict(step=0, tokens=0, train_loss=None, **measured, stage=args.stage))
        if not resumed:
            keep_snapshot(model, start["step"], out, args)
    steps = range(start_step, args.max_steps)
    progress = tqdm(steps, initial=start_step, total=args.max_steps, disable=not is_main, dynamic_ncols=True)
    started = time.perf_counter()
    for step in progress:
        lr = learning_rate(step, args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        step_loss = torch.zeros((), device=device)
        for micro in range(args.grad_accum):
            groups = batches.draw(data_rng)  # every process's windows, drawn in the same order each micro-step
            last_micro = micro == args.grad_accum - 1
            sync = nullcontext() if world == 1 or last_micro else ddp_model.no_sync()
            autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
            with sync:  # only the last micro-step all-reduces the accumulated gradients
                with autocast:
                    loss = torch.zeros((), device=device)
                    for windows in groups:  # each group's mean loss counts once
                        loss = loss + windows.loss(ddp_model, rank, device)
                    loss = loss / args.grad_accum
                loss.backward()
            step_loss += loss.detach()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        elapsed = time.perf_counter() - started
        stop = bool(args.time_limit and elapsed > args.time_limit * 60) or step + 1 == args.stop_at_step
        train_loss, stop = agree(step_loss, stop, world)
        done_tokens = (step + 1 - start_step) * tokens_per_step
        progress.set_postfix(loss=f"{train_loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{done_tokens / elapsed:,.0f}")
        last = step + 1 == args.max_steps or stop
        if last and world > 1:
            check_in_sync(model)
            if is_main:
                progress.write(f"all {world} processes hold identical weights")
        if is_main:
            keep_snapshot(model, start["step"] + step + 1, out, args)
        if is_main and (last or (args.eval_interval and (step + 1) % args.eval_interval == 0)):
            eval_started = time.perf_counter()
            measured = history.measure(model, split.val, config.block_size, probe, args.eval_windows)
            tokens = start["tokens"] + (step + 1) * tokens_per_step
            row = dict(step=start["step"] + step + 1, tokens=tokens, train_loss=train_loss, **measured)
            row |= dict(stage=args.stage, minutes=elapsed / 60, eval_seconds=time.perf_counter() - eval_started)
            history.append_row(out, row)  # before the checkpoint: a resume drops it if that never lands
            progress.write(
                f"step {step + 1}: train loss {train_loss:.4f}, val loss {row['val_loss']:.4f}, "
                f"in-context {row['icl_score']:+.3f}, best induction {max(map(max, row['induction'])):.2f}, "
                f"{elapsed / 60:.1f} min"
            )
            save_checkpoint(model, optimizer, data_rng, step + 1, out, SAVE_DTYPES[args.save_dtype], start)
        if stop:
            if is_main:
                progress.write(f"stopping at step {step + 1} (--time-limit or --stop-at-step); --resume continues")
            break
    if world > 1:
        dist.destroy_process_group()


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


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m gpt2.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--recipe", help=f"a bundled recipe ({', '.join(recipes.bundled())}) or a .toml file")
    p.add_argument("--stage", help="the recipe's stage to run")
    p.add_argument("--data", help="UTF-8 text to train on (default: the shared tinyshakespeare.txt, else downloaded)")
    p.add_argument("--out", default="out/shakespeare", help="output directory: checkpoint, train state, history")
    m = p.add_argument_group("model")
    m.add_argument("--preset", choices=sorted(PRESETS), help="named model size; the flags below override it")
    m.add_argument("--num-layers", type=int)
    m.add_argument("--num-heads", type=int)
    m.add_argument("--embed-dim", type=int)
    m.add_argument("--block-size", type=int, help="context length in tokens")
    m.add_argument("--dropout", type=float, default=0.0)
    m.add_argument("--init-from", help="start from this checkpoint's weights (fresh optimizer and schedule)")
    curriculum.add_arguments(p)
    o = p.add_argument_group("optimization")
    o.add_argument("--grad-accum", type=int, default=1, help="micro-steps per optimizer step")
    o.add_argument("--max-steps", type=int, default=2000)
    o.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    o.add_argument("--min-lr", type=float, default=1e-4, help="learning rate at the end of the cosine decay")
    o.add_argument("--warmup-steps", type=int, default=100)
    o.add_argument("--weight-decay", type=float, default=0.1)
    o.add_argument("--grad-clip", type=float, default=1.0)
    o.add_argument("--seed", type=int, default=1337)
    r = p.add_argument_group("run")
    r.add_argument("--eval-interval", type=int, default=250, help="steps between validation passes and checkpoints")
    r.add_argument("--eval-windows", type=int, help="cap on validation windows per pass (default: the whole split)")
    dtypes = ("auto", "float32", "bfloat16")
    r.add_argument("--dtype", choices=dtypes, default="auto", help="compute dtype; auto: bf16 only where it is faster")
    r.add_argument("--save-dtype", choices=sorted(SAVE_DTYPES), default="float32")
    r.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    r.add_argument("--time-limit", type=float, help="stop (and save) after this many minutes")
    r.add_argument("--stop-at-step", type=int, help="stop (and save) after this step; the schedule spans --max-steps")
    r.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt if it exists")
    r.add_argument("--snapshot-every", type=int, help="keep the weights (float16) every N steps under OUT/snapshots")
    e = p.add_argument_group("evaluation only")
    e.add_argument("--eval-only", action="store_true", help="print the validation loss of --model (or --out) on --data")
    e.add_argument("--model", help="checkpoint directory or Hub name for --eval-only")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    if args.stage and not args.recipe:
        p.error("--stage needs --recipe")
    if args.recipe:  # the recipe's flags first, so that the command line's override them
        flags = recipes.stage_flags(args.recipe, args.stage)
        args = p.parse_args([*flags, *argv])
        args.recipe_flags = flags
    curriculum.check_arguments(p, args)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.eval_only:
        eval_only(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
