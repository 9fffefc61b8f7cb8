"""Figures of heads explained: a cell's QK parts, the parts × parts matrix, the sender × receiver
composition map, and a head's composition partners."""

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import BAR_COLOR, COLORSCALE, DIVERGING, HIGHLIGHT, TOP_MARGIN, base_layout, colorbar, escape_label

POSITIVE, NEGATIVE = BAR_COLOR, "#e45756"


def _bars(fig, labels: list[str], values: np.ndarray, column: int) -> None:
    """Horizontal bars, largest on top, blue for positive and red for negative."""
    colors = [POSITIVE if v >= 0 else NEGATIVE for v in values]
    fig.add_bar(
        x=values,
        y=[escape_label(label) for label in labels],
        orientation="h",
        marker_color=colors,
        text=[f"{v:+.2f}" for v in values],
        textposition="outside",
        cliponaxis=False,
        hovertemplate="%{y}: %{x:+.3f}<extra></extra>",
        row=1,
        col=column,
    )
    lo, hi = min(0.0, float(values.min(initial=0))), max(0.0, float(values.max(initial=0)))
    pad = 0.45 * (hi - lo or 1.0)  # room for the values written beside the bars
    fig.update_xaxes(range=[lo - pad if lo < 0 else 0, hi + pad], row=1, col=column)
    fig.update_yaxes(autorange="reversed", type="category", automargin=True, row=1, col=column)


def qk_parts(key_labels, key_values, query_labels, query_values, key_title: str, query_title: str) -> go.Figure:
    """Two bar charts side by side: the key side's top parts (their contrast: what makes this key
    win) and the query side's top parts (their share of the score)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=(escape_label(key_title), escape_label(query_title)))
    _bars(fig, key_labels, np.asarray(key_values, dtype=np.float32), 1)
    _bars(fig, query_labels, np.asarray(query_values, dtype=np.float32), 2)
    fig.update_annotations(font=dict(size=11))
    fig.update_layout(
        **base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN + 20, b=8)),
        showlegend=False,
        height=max(220, 22 * max(len(key_labels), len(query_labels)) + 70),
    )
    fig.update_xaxes(zeroline=True, zerolinecolor="#888", showticklabels=False)
    return fig


def qk_matrix(matrix: np.ndarray, query_labels: list[str], key_labels: list[str]) -> go.Figure:
    """Query-side parts (rows) × key-side parts (columns): each product's share of the score."""
    z = np.asarray(matrix, dtype=np.float32)
    limit = float(np.abs(z).max()) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[escape_label(label) for label in key_labels],
            y=[escape_label(label) for label in query_labels],
            colorscale=DIVERGING,
            reversescale=True,
            zmid=0,
            zmin=-limit,
            zmax=limit,
            colorbar=colorbar("share", -limit, limit),
            hovertemplate="query %{y} × key %{x}: %{z:+.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        **base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN + 10, b=8)),
        xaxis=dict(title="key side", tickangle=-60, automargin=True, type="category"),
        yaxis=dict(title="query side", autorange="reversed", automargin=True, type="category"),
        height=max(300, min(900, 12 * len(query_labels) + 160)),
    )
    return fig


def composition_map(scores: np.ndarray, title: str, selected: tuple[int, int] | None = None) -> go.Figure:
    """Senders (rows) × receivers (columns), every head as `L{l}H{h}`, from (L, H, L, H) scores;
    a receiver's cells are blank where its layer is not later. Clicking a cell opens a head;
    `selected` (layer, head) outlines that head's row and column."""
    L, H = scores.shape[:2]
    n = L * H
    z = np.asarray(scores, dtype=np.float32).reshape(n, n).copy()
    later = np.repeat(np.arange(L), H)[None, :] > np.repeat(np.arange(L), H)[:, None]
    z[~later] = np.nan
    names = [f"L{layer}H{head}" for layer in range(L) for head in range(H)]
    top = float(np.nanmax(z)) if np.isfinite(z).any() else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=names,
            y=names,
            colorscale=COLORSCALE,
            zmin=0,
            zmax=top,
            colorbar=colorbar(escape_label(title), 0, top),
            hoverongaps=False,
            hovertemplate="%{y} → %{x}: %{z:.3f}<extra></extra>",
        )
    )
    shapes = []
    if selected is not None:
        index = selected[0] * H + selected[1]
        for axis in ("x", "y"):
            lo, hi = index - 0.5, index + 0.5
            span = dict(x0=lo, x1=hi, y0=-0.5, y1=n - 0.5) if axis == "x" else dict(x0=-0.5, x1=n - 0.5, y0=lo, y1=hi)
            shapes.append(dict(type="rect", line=dict(color=HIGHLIGHT, width=1.5), **span))
    step = max(1, -(-n // 24))
    fig.update_layout(
        **base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN + 10, b=8)),
        xaxis=dict(title="receiver", type="category", tickangle=-60, tickvals=names[::step], automargin=True),
        yaxis=dict(title="sender", type="category", autorange="reversed", tickvals=names[::step], automargin=True),
        shapes=shapes,
        height=max(360, min(680, 16 * n + 150)),
    )
    return fig


def partner_bars(labels: list[str], values: np.ndarray, modes: list[str], title: str) -> go.Figure:
    """A head's strongest composition partners: one bar each, named by head and mode (click one to
    open that head)."""
    names = [escape_label(f"{label} ({mode})") for label, mode in zip(labels, modes, strict=True)]
    fig = go.Figure(
        go.Bar(
            x=np.asarray(values, dtype=np.float32),
            y=names,
            orientation="h",
            marker_color=BAR_COLOR,
            text=[f"{v:.2f}" for v in values],
            textposition="auto",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        **base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN, b=8)),
        xaxis=dict(title=escape_label(title), rangemode="tozero"),
        yaxis=dict(autorange="reversed", type="category", automargin=True),
        height=max(200, 22 * len(labels) + 80),
    )
    return fig


ROLE_COLORS = {  # one colour per role, so a glance finds every head of a kind
    "previous-token": "#4c78a8",
    "duplicate-token": "#72b7b2",
    "induction": "#e45756",
    "sink": "#bab0ac",
    "copying": "#54a24b",
    "suppression": "#b279a2",
    "mixed": "#eeeeee",
}


def role_map(labels: list[list[str]], strengths: np.ndarray, selected: tuple[int, int] | None = None) -> go.Figure:
    """Layers (rows) × heads (columns), each cell coloured by its role and labelled with the role and
    the score it rests on; clicking a cell selects its head."""
    roles = list(ROLE_COLORS)
    L, H = strengths.shape
    z = np.array([[roles.index(label) for label in row] for row in labels], dtype=np.float32)
    n = len(roles)
    colorscale = []
    for i, role in enumerate(roles):  # a step per role: z = i maps into [i/n, (i+1)/n]
        colorscale += [[i / n, ROLE_COLORS[role]], [(i + 1) / n, ROLE_COLORS[role]]]
    text = [[f"{labels[layer][h]}<br>{strengths[layer, h]:.2f}" for h in range(H)] for layer in range(L)]
    fig = go.Figure(
        go.Heatmap(
            z=z + 0.5,
            zmin=0,
            zmax=n,
            x=[f"H{h}" for h in range(H)],
            y=[f"L{layer}" for layer in range(L)],
            text=text,
            texttemplate="%{text}",
            textfont=dict(size=9, color="black"),
            colorscale=colorscale,
            showscale=False,
            xgap=1,
            ygap=1,
            hovertemplate="%{y} %{x}: %{text}<extra></extra>",
        )
    )
    if selected is not None:
        layer, head = selected
        rect = dict(x0=head - 0.5, x1=head + 0.5, y0=layer - 0.5, y1=layer + 0.5)
        fig.add_shape(type="rect", line=dict(color=HIGHLIGHT, width=3), **rect)
    fig.update_layout(**base_layout(), yaxis=dict(autorange="reversed"), height=max(220, 30 * L + 90))
    return fig
