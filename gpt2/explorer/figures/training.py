"""The Training view's figures: curves against the training step, and one line per head."""

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from .style import BAR_COLOR, HIGHLIGHT, TOP_MARGIN, base_layout, escape_label

CURVE_COLORS = (BAR_COLOR, "#f58518", "#54a24b")
STAGE_LINE = dict(color="rgba(128,128,128,0.7)", dash="dot", width=1)


def _mark_stages(fig: go.Figure, stages: list) -> None:
    """A dotted line and the stage's name where each stage of a recipe begins (a run of one stage
    has nothing to mark)."""
    for step, name in stages if len(stages) > 1 else ():
        fig.add_vline(x=step, line=STAGE_LINE)
        fig.add_annotation(
            x=step, y=1, yref="paper", text=escape_label(name), showarrow=False, xanchor="left", yanchor="top"
        )


def _layout(fig: go.Figure, y_title: str, height: int, legend: bool) -> None:
    fig.update_layout(
        **base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN + (24 if legend else 0), b=8)),
        height=height,
        showlegend=legend,
        legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
        xaxis=dict(title="step", showgrid=True, rangemode="tozero"),
        yaxis=dict(title=escape_label(y_title), automargin=True, showgrid=True),
        hovermode="closest",
    )


def training_curves(steps: list, series: dict, y_title: str, stages=(), zero_line: bool = False) -> go.Figure:
    """Named curves against the step (a None value leaves a gap)."""
    fig = go.Figure()
    for color, (name, values) in zip(CURVE_COLORS, series.items(), strict=False):
        fig.add_scatter(
            x=steps,
            y=values,
            name=escape_label(name),
            mode="lines+markers",
            marker=dict(size=4),
            line=dict(color=color),
            hovertemplate=f"{escape_label(name)}: %{{y:.3f}} at step %{{x}}<extra></extra>",
        )
    if zero_line:
        fig.add_hline(y=0, line=dict(color="rgba(128,128,128,0.6)", width=1))
    _mark_stages(fig, stages)
    _layout(fig, y_title, 240, legend=len(series) > 1)
    return fig


def head_lines(
    steps: list,
    scores: np.ndarray,
    threshold: float,
    crossings: list,
    score_name: str,
    stages=(),
    marked_step: int | None = None,
) -> go.Figure:
    """(evaluations, L, H) scores as one line per head, coloured by layer (one legend entry per
    layer); a diamond where a head first reaches `threshold`, a dashed line at it, and a solid line
    at `marked_step` (the snapshot shown)."""
    _, L, H = scores.shape
    colors = sample_colorscale("Viridis", [0.5] if L == 1 else list(np.linspace(0, 0.9, L)))
    fig = go.Figure()
    for layer in range(L):
        for head in range(H):
            name = f"L{layer} H{head}"
            fig.add_scatter(
                x=steps,
                y=scores[:, layer, head],
                mode="lines",
                name=f"layer {layer}",
                legendgroup=f"layer {layer}",
                showlegend=head == 0,
                line=dict(color=colors[layer], width=1.5),
                hovertemplate=f"{name}: %{{y:.2f}} at step %{{x}}<extra></extra>",
            )
    if crossings:
        fig.add_scatter(
            x=[step for _, _, step, _ in crossings],
            y=[value for *_, value in crossings],
            mode="markers",
            name="crosses",
            showlegend=False,
            marker=dict(
                symbol="diamond", size=10, color=[colors[layer] for layer, *_ in crossings], line=dict(width=1)
            ),
            text=[f"L{layer} H{head}" for layer, head, *_ in crossings],
            hovertemplate=f"%{{text}} reaches {threshold} ({escape_label(score_name)}) at step %{{x}}<extra></extra>",
        )
    fig.add_hline(y=threshold, line=dict(color=HIGHLIGHT, dash="dash", width=1))
    _mark_stages(fig, stages)
    if marked_step is not None:
        fig.add_vline(x=marked_step, line=dict(color=HIGHLIGHT, width=2))
    _layout(fig, f"{score_name} score", 300, legend=True)
    fig.update_yaxes(range=[0, 1.02])
    return fig
