"""Attention figures: the big heatmap, every head's thumbnail in one grid, and a layers × heads map
of one number per head."""

import numpy as np
import plotly.graph_objects as go

from .style import (
    COLORSCALE,
    DIVERGING,
    GRID_GAP,
    GRID_MASKED,
    HEATMAP_TICK_LABELS,
    HIGHLIGHT,
    MASKED_COLOR,
    TOP_MARGIN,
    base_layout,
    colorbar,
    escape_label,
    short_token,
    token_label,
    visible_token,
)


def attention_heatmap(
    attn: np.ndarray,
    labels: list[str],
    tick_labels: list[str],
    log_scale: bool = False,
    query_row: int | None = None,
) -> go.Figure:
    """Queries down, keys across, the masked future (NaN) in grey; `query_row` outlined. `labels`
    (escaped, unique) name each row and column in the hover text; `tick_labels` (raw token text)
    are shortened into the axes' tick labels."""
    n = attn.shape[-1]
    z = attn.astype(np.float32)
    if log_scale:  # colour by log10 p; the hover still shows p itself, from customdata
        color = np.where(np.isnan(z), np.nan, np.log10(np.clip(z, 1e-4, None))).astype(np.float32)
        extra = dict(
            zmin=-4, zmax=0, customdata=z, hovertemplate="query %{y} → key %{x}: %{customdata:.3f}<extra></extra>"
        )
        bar_title, bar_range = "log10 p", (-4, 0)
    else:
        color = z
        top = float(np.nanmax(z)) if np.isfinite(z).any() else 1.0
        extra = dict(zmin=0, zmax=top, hovertemplate="query %{y} → key %{x}: %{z:.3f}<extra></extra>")
        bar_title, bar_range = "attention", (0, top)
    step = max(1, -(-n // HEATMAP_TICK_LABELS))
    ticks = dict(
        type="category", tickvals=labels[::step], ticktext=[escape_label(short_token(t)) for t in tick_labels[::step]]
    )
    shapes = []
    if query_row is not None:
        shapes.append(
            dict(
                type="rect",
                x0=-0.5,
                x1=n - 0.5,
                y0=query_row - 0.5,
                y1=query_row + 0.5,
                line=dict(color=HIGHLIGHT, width=2),
            )
        )
    layout = go.Layout(
        # NaN cells (the future) show the plot's background: visibly masked
        **base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN + 10, b=8), plot_bgcolor=MASKED_COLOR),
        xaxis=dict(
            title=dict(text="key (attended to); queries down", standoff=2),
            tickangle=-60,
            tickfont=dict(size=10),
            showgrid=False,
            automargin=True,
            **ticks,
        ),
        yaxis=dict(autorange="reversed", tickfont=dict(size=10), showgrid=False, automargin=True, **ticks),
        shapes=shapes,
    )
    trace = go.Heatmap(
        z=color,
        x=labels,
        y=labels,
        colorscale=COLORSCALE,
        colorbar=colorbar(bar_title, *bar_range),
        hoverongaps=False,
        **extra,
    )
    return go.Figure(trace, layout)


def text_heatmap(
    attn: np.ndarray, tokens: list[str], bin_size: int = 1, log_scale: bool = False, query_row: int | None = None
) -> go.Figure:
    """The heatmap of a text: `attn` is (T, T) with NaN in the future, or, for a long text, pooled into
    bins of `bin_size` positions ((N, N), see `gpt2.scores.pool_map`); rows and columns are named by
    their token (or their bin's first and last token) and position."""
    if bin_size == 1:
        return attention_heatmap(
            attn, [token_label(tok, i) for i, tok in enumerate(tokens)], tokens, log_scale, query_row
        )
    T = len(tokens)
    names = []
    for lo in range(0, T, bin_size):
        hi = min(T, lo + bin_size) - 1
        names.append(escape_label(f"'{visible_token(tokens[lo])}'…'{visible_token(tokens[hi])}' ({lo}–{hi})"))
    return attention_heatmap(attn, names, tokens[::bin_size], log_scale, query_row)


def head_grid(thumbnails: np.ndarray, roles: list[list[str]], selected: tuple[int, int] | None = None) -> go.Figure:
    """All layers × heads at once: a mosaic of attention thumbnails (L, H, S, S), each on its own
    scale, labelled with layer, head and role, the selected head outlined. Clicking a thumbnail
    selects its head (the page's script reads `layout.meta.cell`).

    One heatmap trace holds every thumbnail, quantized to a byte per cell: 0 marks the gaps, 1 the
    masked future, 2..255 the attention 0..1. That keeps even GPT-2 medium's 384 heads light."""
    L, H, S, _ = thumbnails.shape
    gap = max(8, S // 2)  # room above each thumbnail for its two-line label
    cell = S + gap
    mosaic = np.zeros((L * cell, H * cell), dtype=np.uint8)
    for layer in range(L):
        for head in range(H):
            z = thumbnails[layer, head]
            z = z / max(float(np.nanmax(z)), 1e-6)
            tile = np.where(np.isnan(z), 1, 2 + np.round(np.nan_to_num(z) * 253)).astype(np.uint8)
            top, left = layer * cell + gap, head * cell
            mosaic[top : top + S, left : left + S] = tile
    colorscale = [
        [0.0, GRID_GAP],
        [0.9 / 255, GRID_GAP],
        [1 / 255, GRID_MASKED],
        [1.9 / 255, GRID_MASKED],
        [2 / 255, "#440154"],
        [0.5, "#21918c"],
        [1.0, "#fde725"],
    ]
    # two short lines above each thumbnail, centred on it, so that none runs past the plot's edge
    labels = [
        dict(x=head * cell + S / 2, y=layer * cell + gap / 2, text=f"L{layer} H{head}<br>{roles[layer][head]}")
        for layer in range(L)
        for head in range(H)
    ]
    font = dict(size=9 if H <= 6 else 7)
    shapes = []
    if selected is not None:
        layer, head = selected
        x0, y0 = head * cell - 1, layer * cell + gap - 1
        shapes.append(
            dict(type="rect", x0=x0, x1=x0 + S + 1, y0=y0, y1=y0 + S + 1, line=dict(color=HIGHLIGHT, width=3))
        )
    layout = go.Layout(
        annotations=[label | dict(showarrow=False, font=font, yanchor="middle") for label in labels], shapes=shapes
    )
    fig = go.Figure(
        go.Heatmap(z=mosaic, zmin=0, zmax=255, colorscale=colorscale, showscale=False, hoverinfo="none"), layout
    )
    fig.update_xaxes(visible=False, constrain="domain", range=[-1, H * cell])
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_layout(
        **base_layout(margin=dict(l=2, r=2, t=TOP_MARGIN, b=2)),
        meta=dict(cell=cell),
        height=max(240, min(1200, 95 * L + TOP_MARGIN)),
    )
    return fig


def layer_head_map(
    values: np.ndarray,
    title: str,
    text: list[list[str]] | None = None,
    selected: tuple[int, int] | None = None,
    diverging: bool = False,
    hover_value: str = "%{z:.3f}",
) -> go.Figure:
    """Layers (rows) × heads (columns) of one number per head; clicking a cell selects its head."""
    L, H = values.shape
    z = values.astype(np.float32)
    limit = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    if diverging:
        color, bar_range = (
            dict(colorscale=DIVERGING, zmid=0, zmin=-limit, zmax=limit, reversescale=True),
            (-limit, limit),
        )
    else:
        finite = z[np.isfinite(z)]
        bar_range = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        color = dict(colorscale=COLORSCALE, zmin=bar_range[0], zmax=bar_range[1])
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"H{h}" for h in range(H)],
            y=[f"L{layer}" for layer in range(L)],
            text=text,
            texttemplate="%{text}" if text is not None else None,
            textfont=dict(size=9),
            colorbar=colorbar(escape_label(title), *bar_range),
            hovertemplate=f"%{{y}} %{{x}}: {hover_value}<extra></extra>",
            **color,
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
            line=dict(color=HIGHLIGHT, width=3),
        )
    fig.update_layout(**base_layout(), yaxis=dict(autorange="reversed"), height=max(220, 30 * L + 90))
    return fig
