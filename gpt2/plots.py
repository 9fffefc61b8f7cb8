"""Plotly figures from arrays: attention heatmaps, the head grid, head-score maps, next-token bars.

Plotly renders a little HTML inside labels (`<b>`, `<br>`, links), so every piece of model or user
text passes through `escape_label` first. Figures that would carry more than `MAX_AXIS` tokens on an
axis are pooled by the caller (see `pool_attention`) so no figure grows past about a megabyte.
"""

import html

import numpy as np
import plotly.graph_objects as go

MAX_AXIS = 256  # tokens on one heatmap axis before pooling
THUMB_AXIS = 32  # tokens on one thumbnail axis
MASKED_COLOR = "rgba(128, 128, 128, 0.25)"
VISIBLE_WHITESPACE = str.maketrans({" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"})
COLORSCALE = "Viridis"


def visible_token(text: str) -> str:
    """A token's text with spaces, newlines and tabs drawn as visible symbols, and control characters
    (NUL included) shown as their code, so every token is a readable chip."""
    shown = text.translate(VISIBLE_WHITESPACE)
    return "".join(ch if ch.isprintable() or ch in "␣↵⇥␍" else f"\\x{ord(ch):02x}" for ch in shown) or "∅"


def escape_label(text: str) -> str:
    """Make text safe for plotly labels and hover text: its pseudo-HTML shows as literal characters."""
    return html.escape(text, quote=True)


def axis_labels(tokens: list[str]) -> list[str]:
    """Unique, escaped tick labels: "'tok' (i)", so repeated tokens stay apart by position."""
    return [escape_label(f"'{visible_token(tok)}' ({i})") for i, tok in enumerate(tokens)]


def pool_attention(attn: np.ndarray, tokens: list[str], max_axis: int = MAX_AXIS) -> tuple[np.ndarray, list[str], int]:
    """Average-pool a (T, T) map into at most `max_axis` bins per axis.

    Bins of `size` consecutive positions: a pooled row is the mean of its queries' rows, a pooled
    column the sum of its keys, so pooled rows still sum to 1. Bins entirely in the future are NaN.
    Returns (pooled map, one label per bin, bin size).
    """
    T = attn.shape[-1]
    size = -(-T // max_axis)  # ceil
    if size == 1:
        masked = np.where(np.tril(np.ones((T, T), dtype=bool)), attn, np.nan)
        return masked.astype(np.float32), axis_labels(tokens), 1
    bins = -(-T // size)
    padded = np.zeros((bins * size, bins * size), dtype=np.float64)
    padded[:T, :T] = attn
    pooled = padded.reshape(bins, size, bins, size).sum(axis=3)  # keys summed, (bins, size, bins)
    counts = np.minimum(size, T - np.arange(bins) * size)  # real queries per bin
    pooled = pooled.sum(axis=1) / counts[:, None]
    pooled[np.triu(np.ones((bins, bins), dtype=bool), k=1)] = np.nan
    labels = []
    for b in range(bins):
        lo, hi = b * size, min(T, (b + 1) * size) - 1
        text = f"'{visible_token(tokens[lo])}'…'{visible_token(tokens[hi])}' ({lo}–{hi})"
        labels.append(escape_label(text))
    return pooled.astype(np.float32), labels, size


def drop_first_token(attn: np.ndarray) -> np.ndarray:
    """Zero key 0 and renormalize each row over the remaining keys (query 0 keeps its row)."""
    out = attn.astype(np.float64, copy=True)
    out[..., 1:, 0] = 0.0
    out[..., 1:, :] /= np.maximum(out[..., 1:, :].sum(-1, keepdims=True), 1e-12)
    return out


def attention_heatmap(
    attn: np.ndarray, tokens: list[str], title: str, log_scale: bool = False
) -> tuple[go.Figure, str]:
    """The big view: queries down, keys across, the causal future drawn as masked.

    Returns the figure and a note ('' unless the map was pooled).
    """
    T = attn.shape[-1]
    z, labels, size = pool_attention(attn, tokens)
    note = ""
    if size > 1:
        note = f"{T} tokens: pooled in bins of {size} positions per axis (rows averaged, keys summed) to keep the figure light."
    n = len(labels)
    if log_scale:  # colour by log10 p; the hover still shows p itself, from customdata
        color = np.where(np.isnan(z), np.nan, np.log10(np.clip(z, 1e-4, None))).astype(np.float32)
        extra = dict(
            customdata=z, zmin=-4, zmax=0, hovertemplate="query %{y} → key %{x}: %{customdata:.3f}<extra></extra>"
        )
    else:
        color = z
        extra = dict(zmin=0, zmax=float(np.nanmax(z)), hovertemplate="query %{y} → key %{x}: %{z:.3f}<extra></extra>")
    fig = go.Figure(
        go.Heatmap(
            z=color,
            x=labels,
            y=labels,
            colorscale=COLORSCALE,
            colorbar=dict(title="log10 p" if log_scale else "attention", thickness=12),
            **extra,
            hoverongaps=False,
            xgap=0,
            ygap=0,
        )
    )
    fig.update_layout(
        # in the container's top margin, which grows to fit, so it stays clear of the key labels below it
        title=dict(
            text=escape_label(title), x=0.01, xanchor="left", y=0.995, yref="container", yanchor="top", automargin=True
        ),
        plot_bgcolor=MASKED_COLOR,  # NaN cells (the future) show the background: visibly masked
        margin=dict(l=10, r=10, t=30, b=10),
        height=max(420, min(760, 18 * n + 140)),
        xaxis=dict(
            title="key (attended to)", side="top", tickangle=-60, type="category", showgrid=False, automargin=True
        ),
        yaxis=dict(title="query (attending)", autorange="reversed", type="category", showgrid=False, automargin=True),
    )
    return fig, note


def head_grid(maps: np.ndarray, roles: list[list[str]], selected: tuple[int, int] | None = None) -> go.Figure:
    """All layers × heads at once: one mosaic of attention thumbnails (each pooled to THUMB_AXIS),
    labelled with layer, head and role, the selected head outlined.

    One heatmap trace holds every thumbnail, quantized to a byte per cell: 0 marks the gaps, 1 the
    masked future, 2..255 the attention 0..1. That keeps even GPT-2 medium's 384 heads light and fast.
    """
    L, H, T, _ = maps.shape
    tokens = [""] * T
    side = min(T, THUMB_AXIS)
    gap = max(4, side // 3)  # room above each thumbnail for its label
    cell = side + gap
    mosaic = np.zeros((L * cell, H * cell), dtype=np.uint8)
    for layer in range(L):
        for head in range(H):
            z, _, _ = pool_attention(maps[layer, head], tokens, THUMB_AXIS)
            z = z / max(float(np.nanmax(z)), 1e-6)  # each thumbnail on its own scale, like a glance should be
            tile = np.where(np.isnan(z), 1, 2 + np.round(np.nan_to_num(z) * 253)).astype(np.uint8)
            top, left = layer * cell + gap, head * cell
            mosaic[top : top + tile.shape[0], left : left + tile.shape[1]] = tile
    gap_color, masked = "white", "rgb(220,220,220)"
    colorscale = [
        [0.0, gap_color],
        [0.9 / 255, gap_color],
        [1 / 255, masked],
        [1.9 / 255, masked],
        [2 / 255, "#440154"],
        [0.5, "#21918c"],
        [1.0, "#fde725"],
    ]
    labels = [
        dict(x=head * cell + side / 2, y=layer * cell + gap / 2, text=f"L{layer} H{head} · {roles[layer][head]}")
        for layer in range(L)
        for head in range(H)
    ]
    shapes = []
    if selected is not None:
        layer, head = selected
        x0, y0 = head * cell - 1, layer * cell + gap - 1
        shapes.append(
            dict(type="rect", x0=x0, x1=x0 + side + 1, y0=y0, y1=y0 + side + 1, line=dict(color="crimson", width=3))
        )
    layout = go.Layout(
        annotations=[label | dict(showarrow=False, font=dict(size=9), yanchor="middle") for label in labels],
        shapes=shapes,
    )
    fig = go.Figure(
        go.Heatmap(z=mosaic, zmin=0, zmax=255, colorscale=colorscale, showscale=False, hoverinfo="skip"), layout
    )
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_layout(
        title=dict(text="Every head at a glance: layers down, heads across", x=0.01, font=dict(size=14)),
        height=max(320, min(1400, 110 * L + 60)),
        margin=dict(l=5, r=5, t=40, b=5),
        plot_bgcolor="white",
    )
    return fig


def score_heatmap(
    scores: np.ndarray, score_name: str, roles: list[list[str]], selected: tuple[int, int] | None = None
) -> go.Figure:
    """One head score over layers (rows) × heads (columns), each cell labelled with its role."""
    L, H = scores.shape
    text = [[f"{scores[layer, head]:.2f}<br>{roles[layer][head]}" for head in range(H)] for layer in range(L)]
    fig = go.Figure(
        go.Heatmap(
            z=scores.astype(np.float32),
            x=[f"H{h}" for h in range(H)],
            y=[f"L{layer}" for layer in range(L)],
            text=text,
            texttemplate="%{text}",
            textfont=dict(size=9),
            colorscale=COLORSCALE,
            colorbar=dict(title=score_name, thickness=12),
            hovertemplate="%{y} %{x}: %{z:.3f}<extra></extra>",
        )
    )
    if selected is not None:
        layer, head = selected
        fig.add_shape(
            type="rect",
            x0=head - 0.5,
            x1=head + 0.5,
            y0=layer - 0.5,
            y1=layer + 0.5,
            line=dict(color="crimson", width=3),
        )
    fig.update_layout(
        title=dict(text=f"{score_name} score per head", x=0.01),
        yaxis=dict(autorange="reversed"),
        height=max(260, 34 * L + 120),
        margin=dict(l=10, r=10, t=40, b=10),
    )
    return fig


def next_token_bars(tokens: list[str], probs: np.ndarray, title: str) -> go.Figure:
    """Top next-token probabilities as horizontal bars, most likely on top."""
    labels = [escape_label(f"{i + 1}. '{visible_token(tok)}'") for i, tok in enumerate(tokens)]
    fig = go.Figure(
        go.Bar(
            x=probs.astype(np.float32),
            y=labels,
            orientation="h",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
            marker_color="#4c78a8",
        )
    )
    fig.update_layout(
        title=dict(text=escape_label(title), x=0.01),
        xaxis=dict(title="probability", range=[0, 1]),
        yaxis=dict(autorange="reversed", type="category"),
        height=360,
        margin=dict(l=10, r=10, t=40, b=10),
    )
    return fig


def figure_bytes(fig: go.Figure) -> int:
    """Size of the JSON a browser receives for this figure."""
    return len(fig.to_json().encode("utf-8"))
