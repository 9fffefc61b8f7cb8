"""The lab's and the query panel's figures: next-token bars, per-position lines, the logit lens, a
layers × positions map, and plain bar and line series."""

import numpy as np
import plotly.graph_objects as go

from .style import (
    BAR_COLOR,
    COLORSCALE,
    DIVERGING,
    TOP_MARGIN,
    base_layout,
    colorbar,
    escape_label,
    position_ticks,
    short_token,
    token_label,
    visible_token,
)


def probability_text(p: float) -> str:
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"


def probability_bars(
    tokens: list[str], probs: np.ndarray, compare: np.ndarray | None = None, names=("clean", "ablated")
) -> go.Figure:
    """Top next-token probabilities as horizontal bars, most likely on top, each labelled with its
    value, on an axis that fits them; with `compare`, a second bar per token (e.g. after ablation)."""
    labels = [
        escape_label(f"{i + 1}. '{short_token(tok)}'") for i, tok in enumerate(tokens)
    ]  # the rank keeps them unique
    fig = go.Figure()
    series = [(names[0], probs, BAR_COLOR)] + ([(names[1], compare, "#e45756")] if compare is not None else [])
    for name, values, color in series:
        fig.add_bar(
            x=values.astype(np.float32),
            y=labels,
            orientation="h",
            name=name,
            marker_color=color,
            text=[probability_text(v) for v in values],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.4f}<extra>" + name + "</extra>",
        )
    top = float(max(np.max(probs), np.max(compare) if compare is not None else 0.0))
    fig.update_layout(
        **base_layout(margin=dict(l=4, r=24, t=TOP_MARGIN, b=8)),
        barmode="group",
        showlegend=compare is not None,
        legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
        xaxis=dict(title="probability", range=[0, top * 1.25 or 1.0], showgrid=True),
        yaxis=dict(autorange="reversed", type="category", automargin=True),
        height=max(240, 24 * len(tokens) * (2 if compare is not None else 1) + 70),
    )
    return fig


def token_line(
    tokens: list[str],
    series: dict[str, np.ndarray],
    y_title: str,
    extra_hover: dict | None = None,
    first_position: int = 1,
) -> go.Figure:
    """One value per token position (e.g. each next token's loss), one line per series; the hover
    names each point's token (`tokens[i]` at position `first_position + i`)."""
    fig = go.Figure()
    colors = (BAR_COLOR, "#e45756", "#54a24b")
    hover_labels = [token_label(tok, first_position + i) for i, tok in enumerate(tokens)]
    for (name, values), color in zip(series.items(), colors, strict=False):
        custom = np.array(hover_labels, dtype=object)
        template = "%{customdata}: %{y:.3f}"
        if extra_hover:
            ((extra_name, extra_values),) = extra_hover.items()
            custom = np.stack([custom, np.asarray(extra_values, dtype=object)], axis=-1)
            template = f"%{{customdata[0]}}: %{{y:.3f}}, {extra_name} %{{customdata[1]:.2f}}"
        fig.add_scatter(
            x=np.arange(len(values)),
            y=np.asarray(values, dtype=np.float32),
            mode="lines+markers",
            marker=dict(size=4),
            line=dict(color=color, width=1.5),
            name=escape_label(name),
            customdata=custom[: len(values)],
            hovertemplate=template + f"<extra>{escape_label(name)}</extra>",
        )
    fig.update_layout(
        **base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN, b=8)),
        showlegend=len(series) > 1,
        legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
        xaxis=dict(title="position", zeroline=False),
        yaxis=dict(title=y_title, zeroline=False, automargin=True),
        height=280,
    )
    return fig


def lens_map(
    top_probs: np.ndarray, top_tokens: list[list[list[str]]], tokens: list[str], layer_names: list[str]
) -> go.Figure:
    """The logit lens: layers (rows, the embeddings first) × positions, coloured by the top token's
    probability and labelled with it where there is room; the hover lists the top k."""
    L1, T, k = top_probs.shape
    names = [token_label(tok, i) for i, tok in enumerate(tokens)]
    hover = np.empty((L1, T, 2), dtype=object)
    for layer in range(L1):
        for pos in range(T):
            tops = (
                f"{escape_label(visible_token(top_tokens[layer][pos][i]))} {top_probs[layer, pos, i]:.3f}"
                for i in range(k)
            )
            hover[layer, pos] = (names[pos], "<br>".join(tops))
    show_text = T <= 48
    text = [[escape_label(short_token(top_tokens[layer][pos][0])) for pos in range(T)] for layer in range(L1)]
    fig = go.Figure(
        go.Heatmap(
            z=top_probs[..., 0].astype(np.float32),
            x=list(range(T)),
            y=layer_names,
            customdata=hover,
            text=text if show_text else None,
            texttemplate="%{text}" if show_text else None,
            textfont=dict(size=9),
            colorscale=COLORSCALE,
            zmin=0,
            zmax=1,
            colorbar=colorbar("top p", 0, 1),
            hovertemplate="%{y}, predicting after %{customdata[0]}:<br>%{customdata[1]}<extra></extra>",
        )
    )
    fig.update_layout(
        **base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN, b=8)),
        xaxis=dict(
            title="position (the prediction made there)", tickangle=-60, automargin=True, **position_ticks(tokens)
        ),
        yaxis=dict(autorange="reversed", automargin=True),
        height=max(260, 26 * L1 + 140),
    )
    return fig


def layer_position_map(values: np.ndarray, tokens: list[str], title: str) -> go.Figure:
    """Layers (rows) × positions of one number each, e.g. residual-stream patching."""
    L, T = values.shape
    names = np.array([token_label(tok, i) for i, tok in enumerate(tokens)], dtype=object)
    finite = np.abs(values[np.isfinite(values)])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=values.astype(np.float32),
            x=list(range(T)),
            y=[f"L{layer}" for layer in range(L)],
            customdata=np.broadcast_to(names[None, :], (L, T)),
            colorscale=DIVERGING,
            reversescale=True,
            zmid=0,
            zmin=-limit,
            zmax=limit,
            colorbar=colorbar(escape_label(title), -limit, limit),
            hovertemplate="%{y} at %{customdata}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        **base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN, b=8)),
        xaxis=dict(tickangle=-60, automargin=True, **position_ticks(tokens)),
        yaxis=dict(autorange="reversed"),
        height=max(240, 28 * L + 130),
    )
    return fig


def bar_series(labels: list[str], values: np.ndarray, title: str) -> go.Figure:
    """Vertical bars, one per label (e.g. each MLP's direct contribution)."""
    fig = go.Figure(
        go.Bar(
            x=labels, y=values.astype(np.float32), marker_color=BAR_COLOR, hovertemplate="%{x}: %{y:.3f}<extra></extra>"
        )
    )
    fig.update_layout(
        **base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN, b=8)),
        yaxis=dict(title=escape_label(title), zeroline=True, automargin=True),
        xaxis=dict(automargin=True),
        height=240,
    )
    return fig


def line_series(x: list, values: np.ndarray, y_title: str) -> go.Figure:
    fig = go.Figure(
        go.Scatter(
            x=x, y=values, mode="lines+markers", line=dict(color=BAR_COLOR), hovertemplate="%{x}: %{y}<extra></extra>"
        )
    )
    fig.update_layout(
        **base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN, b=8)),
        yaxis=dict(title=escape_label(y_title), automargin=True),
        height=220,
    )
    return fig
