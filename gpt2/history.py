"""A training run's history: what the trainer records at every evaluation, and where it keeps it
(docs/training.md, "History").

Each evaluation appends one JSON line to `history.jsonl` in the run's directory: the step and tokens
seen, the training and validation loss, the in-context-learning score, and every head's
previous-token, duplicate-token and induction scores ((L, H) lists) on a probe batch made once per
run. Snapshots (`--snapshot-every`) are Hugging Face checkpoints under `snapshots/step-NNNNNN`.
A run that starts from another run's weights (`--init-from`) carries that run's rows over, and its
own steps follow on from them.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .data import token_pool
from .heads.roles import BATCH, LENGTH, repeated_sequences, sequence_scores
from .loss import validation_token_losses

HISTORY_FILE = "history.jsonl"
PROBE_FILE = "probe.json"  # the probe batch's token ids, so the explorer can show what was measured
SNAPSHOTS_DIR = "snapshots"
PROBE_POOL_SIZE = 500  # the most frequent training tokens: those a model learns first
HEAD_SCORES = {"previous_token": "previous-token", "duplicate_token": "duplicate-token", "induction": "induction"}
FIELDS = ("step", "tokens", "train_loss", "val_loss", "icl_score", *HEAD_SCORES, "stage")


class HistoryError(ValueError):
    """A directory without a history, or a history file that is not one."""


# -- the probes


def probe_pool(train_tokens: torch.Tensor, size: int = PROBE_POOL_SIZE) -> torch.Tensor:
    """The `size` most frequent training tokens among those seen at least 5 times."""
    pool = token_pool(train_tokens)
    if pool.numel() < 2:  # a text too short for counts to mean much: every token it has
        pool = train_tokens.unique()
    counts = torch.bincount(train_tokens, minlength=int(pool.max()) + 1)[pool]
    return pool[counts.argsort(descending=True, stable=True)[:size]]


@dataclass
class Probe:
    """The probe batch of a run: random repeated sequences of frequent training tokens, made once."""

    sequences: torch.Tensor  # (BATCH, 2 length)

    @classmethod
    def for_run(cls, train_tokens: torch.Tensor, block_size: int) -> "Probe":
        pool = probe_pool(train_tokens)
        length = min(LENGTH, block_size // 2, pool.numel())
        return cls(repeated_sequences(pool, BATCH, length))

    def save(self, directory) -> None:
        path = Path(directory) / PROBE_FILE
        path.write_text(json.dumps({"sequences": self.sequences.tolist()}) + "\n", encoding="utf-8")

    def head_scores(self, model) -> dict[str, list]:
        """Field name → (L, H) nested lists of the model's scores on the batch (gpt2.heads.roles)."""
        was_training = model.training
        model.eval()
        scores = sequence_scores(model, self.sequences)
        model.train(was_training)
        return {field: rounded(scores[name].tolist()) for field, name in HEAD_SCORES.items()}


def rounded(values: list[list[float]], digits: int = 4) -> list[list[float]]:
    return [[round(value, digits) for value in row] for row in values]


def icl_positions(block_size: int) -> tuple[slice, slice]:
    """The early and late positions the in-context-learning score compares: from 1/16 to 1/8 of the
    context (16 to 31 of 256), and its last eighth (224 to 255 of 256); one position each at least."""
    eighth = max(1, block_size // 8)
    return slice(block_size // 16, max(eighth, block_size // 16 + 1)), slice(block_size - eighth, block_size)


def icl_score(losses: torch.Tensor) -> float:
    """Mean loss at the late positions minus mean loss at the early ones, for per-token losses
    (windows, T) of held-out text: below 0 when later tokens gain from the context before them."""
    early, late = icl_positions(losses.size(-1))
    return (losses[:, late].mean() - losses[:, early].mean()).item()


def measure(model, val_tokens: torch.Tensor, block_size: int, probe: Probe, max_windows: int | None = None) -> dict:
    """The fields of a history row that measure the model: the validation loss and the
    in-context-learning score from one pass over held-out windows, and the probe's head scores."""
    losses = validation_token_losses(model, val_tokens, block_size, max_windows=max_windows)
    return dict(val_loss=losses.double().mean().item(), icl_score=icl_score(losses), **probe.head_scores(model))


# -- the file


def history_path(directory) -> Path:
    return Path(directory) / HISTORY_FILE


def read_history(directory) -> list[dict]:
    """The rows of `directory`'s history in order; HistoryError if it has none."""
    path = history_path(directory)
    if not path.is_file():
        raise HistoryError(f"{Path(directory).name} has no training history ({HISTORY_FILE})")
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise HistoryError(f"{path} is not a history: line {exc.lineno}: {exc.msg}") from None


def write_history(directory, rows: list[dict]) -> None:
    """Replace `directory`'s history with `rows`."""
    path = history_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    tmp.replace(path)


def append_row(directory, row: dict) -> None:
    with history_path(directory).open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def rows_up_to(directory, step: float = float("inf")) -> list[dict]:
    """The history's rows up to `step` (a resumed run drops what it will record again); none if
    `directory` has no history."""
    if not history_path(directory).is_file():
        return []
    return [row for row in read_history(directory) if row["step"] <= step]


def probe_sequence(directory) -> list[int] | None:
    """The first sequence of the run's probe batch (random frequent tokens, repeated), if it kept one."""
    path = Path(directory) / PROBE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))["sequences"][0]
    except (OSError, ValueError, KeyError, IndexError):
        return None


# -- snapshots


def snapshot_dir(directory, step: int) -> Path:
    return Path(directory) / SNAPSHOTS_DIR / f"step-{step:06d}"


def snapshot_steps(directory) -> dict[int, Path]:
    """Step → checkpoint directory of every snapshot under `directory`, in step order."""
    root = Path(directory) / SNAPSHOTS_DIR
    found = {}
    for path in root.glob("step-*") if root.is_dir() else ():
        if path.name[5:].isdigit() and (path / "config.json").is_file():
            found[int(path.name[5:])] = path
    return dict(sorted(found.items()))
