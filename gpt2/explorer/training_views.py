"""The Training view's numbers: a run's history (`gpt2.history`) as curves, the step at which each
head first reaches its role's threshold, and a summary of what formed when. Data only; the drawings
are `figures.training`'s."""

from dataclasses import dataclass

import numpy as np

from ..heads.roles import ROLE_RULES
from ..history import HEAD_SCORES
from .chart import Chart
from .inputs import UserInputError
from .lab_views import View

# the history's per-head fields, as the view's choices name them (first: the default)
SCORE_CHOICES = (
    ("induction", "induction"),
    ("previous-token", "previous_token"),
    ("duplicate-token", "duplicate_token"),
)
THRESHOLDS = {score: threshold for _, score, threshold in ROLE_RULES if threshold > 0}


def threshold(field: str) -> float:
    """The score at which a head takes the role (`gpt2.heads.roles.ROLE_RULES`)."""
    return THRESHOLDS[HEAD_SCORES[field]]


def check_field(field: str) -> str:
    if field not in HEAD_SCORES:
        raise UserInputError(f"unknown head score {field!r}: choose one of {', '.join(HEAD_SCORES)}")
    return field


@dataclass(frozen=True)
class Crossing:
    """A head's first evaluation at or over its role's threshold."""

    layer: int
    head: int
    step: int
    value: float

    @property
    def name(self) -> str:
        return f"L{self.layer} H{self.head}"


def head_series(rows: list[dict], field: str) -> np.ndarray:
    """(evaluations, L, H) one head score at every row."""
    return np.array([row[field] for row in rows], dtype=np.float32)


def crossings(rows: list[dict], field: str) -> list[Crossing]:
    """Each head that ever reaches the threshold of `field`'s role, at its first such row, in step order."""
    scores, steps = head_series(rows, field), [row["step"] for row in rows]
    found = []
    for layer, head in zip(*np.nonzero((scores >= threshold(field)).any(0)), strict=True):
        first = int(np.argmax(scores[:, layer, head] >= threshold(field)))
        found.append(Crossing(int(layer), int(head), steps[first], float(scores[first, layer, head])))
    return sorted(found, key=lambda c: (c.step, c.layer, c.head))


def stage_starts(rows: list[dict]) -> list[tuple[int, str]]:
    """(step, stage name) where each named stage of a recipe begins (at its first row's step)."""
    starts, current = [], None
    for previous, row in zip([None, *rows], rows, strict=False):
        stage = row.get("stage")
        if stage and stage != current:
            starts.append((previous["step"] if previous else row["step"], stage))
        current = stage
    return starts


def _steps(rows):
    return [row["step"] for row in rows]


def loss_view(rows: list[dict]) -> View:
    series = {"train": [row["train_loss"] for row in rows], "validation": [row["val_loss"] for row in rows]}
    args = dict(steps=_steps(rows), series=series, y_title="loss (nats/token)", stages=stage_starts(rows))
    chart = Chart("training_curves", args)
    data = dict(step=_steps(rows), **{f"{name}_loss": values for name, values in series.items()})
    return View(chart, "Loss: training and held-out validation", data)


def icl_view(rows: list[dict]) -> View:
    values = [row["icl_score"] for row in rows]
    args = dict(steps=_steps(rows), series={"in-context learning": values}, y_title="late − early loss (nats)")
    chart = Chart("training_curves", args | dict(stages=stage_starts(rows), zero_line=True))
    label = "In-context learning score: loss late in the context minus early (lower = the context helps more)"
    return View(chart, label, dict(step=_steps(rows), icl_score=values))


def head_lines_view(rows: list[dict], field: str, marked_step: int | None = None) -> View:
    """One line per head of one score against the step, coloured by layer; each crossing marked."""
    field = check_field(field)
    scores = head_series(rows, field)
    found = crossings(rows, field)
    args = dict(
        steps=_steps(rows),
        scores=scores,
        threshold=threshold(field),
        crossings=[(c.layer, c.head, c.step, c.value) for c in found],
        stages=stage_starts(rows),
        marked_step=marked_step,
        score_name=HEAD_SCORES[field],
    )
    label = f"Each head's {HEAD_SCORES[field]} score (one line per head, coloured by layer; ◆ where it crosses {threshold(field)})"
    data = dict(step=_steps(rows), scores=scores.tolist(), threshold=threshold(field))
    return View(Chart("head_lines", args), label, data)


def _formation(rows: list[dict], field: str) -> str:
    found = crossings(rows, field)
    name = HEAD_SCORES[field]
    if not found:
        best = head_series(rows, field)[-1].max()
        return f"no {name} head yet (best {best:.2f} at the last step; the role needs {threshold(field)})"
    first = [c for c in found if c.step == found[0].step]
    heads = ", ".join(c.name for c in first)
    later = found[len(first) :]
    more = f"; {len(later)} more by step {later[-1].step:,} ({', '.join(c.name for c in later)})" if later else ""
    return f"**{name}** forms at step {found[0].step:,} ({heads}){more}"


def summary(rows: list[dict], model_name: str) -> str:
    """What formed when, in a few lines of Markdown."""
    first, last = rows[0], rows[-1]
    stages = stage_starts(rows)
    staged = (
        " in stages " + ", ".join(f"*{name}* from step {step:,}" for step, name in stages) if len(stages) > 1 else ""
    )
    lines = [
        f"**{model_name}**: {len(rows)} evaluations from step {first['step']:,} to {last['step']:,} "
        f"({last['tokens'] / 1e6:.1f} M tokens){staged}.",
        *(f"- {_formation(rows, field)}" for _, field in SCORE_CHOICES[:2]),
        f"- **in-context learning score** {first['icl_score']:+.2f} at step {first['step']:,}, "
        f"{min(row['icl_score'] for row in rows):+.2f} at best, {last['icl_score']:+.2f} at the end",
    ]
    return "\n".join(lines)
