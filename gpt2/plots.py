"""Plotly figures from arrays: attention heatmaps, the head grid, head-score maps, bars, the lab's maps.

Plotly renders a little HTML inside labels (`<b>`, `<br>`, links), so every piece of model or user
text passes through `escape_label` first. Figures carry no title in the app (the component's label
is the title); `with_title` adds one for an exported page. Backgrounds
are transparent so the page's light or dark theme shows through. Maps longer than `MAX_AXIS`
tokens are pooled by the caller so no figure grows past about a megabyte.
"""

import html
import json

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

MAX_AXIS = 256  # tokens on one heatmap axis before pooling
MAX_TICK_LABELS = 24  # tick labels drawn on one axis; hover names every cell
HEATMAP_TICK_LABELS = 16  # fewer on the square heatmap: a phone draws it under 300 px tall
TICK_CHARS = 8  # characters of a token shown in a tick label
MASKED_COLOR = "rgba(128, 128, 128, 0.22)"
VISIBLE_WHITESPACE = str.maketrans({" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"})
COLORSCALE = "Viridis"
PLOT_CONFIG = {"displaylogo": False, "displayModeBar": False}
TOP_MARGIN = 10  # the component's label sits above the plot (see the app's CSS)
DIVERGING = "RdBu"
BAR_COLOR = "#4c78a8"
HIGHLIGHT = "crimson"
GRID_GAP, GRID_MASKED = "rgba(0,0,0,0)", "rgb(200,200,200)"


def visible_token(text: str) -> str:
    """A token's text with spaces, newlines and tabs drawn as visible symbols, and control characters
    (NUL included) shown as their code, so every token is a readable chip."""
    shown = text.translate(VISIBLE_WHITESPACE)
    return "".join(ch if ch.isprintable() or ch in "␣↵⇥␍" else f"\\x{ord(ch):02x}" for ch in shown) or "∅"


def escape_label(text: str) -> str:
    """Make text safe for plotly labels and hover text: its pseudo-HTML shows as literal characters."""
    return html.escape(text, quote=True)


def token_label(token: str, position: int) -> str:
    """ "'tok' (i)", escaped: how hover text names a token."""
    return escape_label(f"'{visible_token(token)}' ({position})")


def _short(token: str) -> str:
    shown = visible_token(token)
    return shown if len(shown) <= TICK_CHARS else shown[: TICK_CHARS - 1] + "…"


def _ticks(tokens: list[str]) -> dict:
    """Ticks for a numeric position axis: short escaped token labels, at most MAX_TICK_LABELS."""
    step = max(1, -(-len(tokens) // MAX_TICK_LABELS))
    positions = list(range(0, len(tokens), step))
    return dict(tickmode="array", tickvals=positions, ticktext=[escape_label(_short(tokens[i])) for i in positions])


def _base_layout(**extra) -> dict:
    return (
        dict(
            paper_bgcolor="rgba(0,0,0,0)",
            plot_bgcolor="rgba(0,0,0,0)",
            font=dict(size=11),
            margin=dict(l=4, r=4, t=TOP_MARGIN, b=8),
            hoverlabel=dict(align="left"),
        )
        | extra
    )


def _colorbar(title: str, lo: float, hi: float) -> dict:
    """A short horizontal colour bar above the plot's right end: it takes no width from the plot,
    which matters on a phone. Three level labels, at the ends and the middle of [lo, hi], fit under
    it at any width."""
    levels = [lo, (lo + hi) / 2, hi] if np.isfinite([lo, hi]).all() and hi > lo else [lo]
    return dict(
        tickmode="array",
        tickvals=levels,
        ticktext=[f"{v:.2g}" for v in levels],
        title=dict(text=title, side="right", font=dict(size=10)),
        orientation="h",
        thickness=8,
        len=0.45,
        x=1,
        xanchor="right",
        y=1.01,
        yanchor="bottom",
        tickangle=0,
        tickfont=dict(size=9),
    )


def with_title(fig: go.Figure, title: str) -> go.Figure:
    """A copy of `fig` titled `title` (escaped), for an exported page."""
    out = go.Figure(fig)
    out.update_layout(title=dict(text=escape_label(title), x=0.01, xanchor="left"), margin=dict(t=60))
    return out


def figure_json(fig: go.Figure) -> str:
    """The figure as Plotly JSON with its display config: no toolbar (it would sit over the labels;
    dragging still zooms and a double click resets)."""
    spec = pio.to_json(fig, validate=False)  # '{"data": ..., "layout": ...}'
    return spec[:-1] + ', "config": ' + json.dumps(PLOT_CONFIG) + "}"


def figure_bytes(fig: go.Figure) -> int:
    """Size of the JSON a browser receives for this figure."""
    return len(figure_json(fig).encode("utf-8"))


def placeholder(message: str, height: int = 260) -> go.Figure:
    """An empty state: no axes, one line of guidance."""
    fig = go.Figure()
    fig.add_annotation(text=escape_label(message), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(**_base_layout(height=height))
    return fig


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
        type="category", tickvals=labels[::step], ticktext=[escape_label(_short(t)) for t in tick_labels[::step]]
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
        **_base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN + 10, b=8), plot_bgcolor=MASKED_COLOR),
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
        colorbar=_colorbar(bar_title, *bar_range),
        hoverongaps=False,
        **extra,
    )
    return go.Figure(trace, layout)


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
        **_base_layout(margin=dict(l=2, r=2, t=TOP_MARGIN, b=2)),
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
            colorbar=_colorbar(escape_label(title), *bar_range),
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
    fig.update_layout(**_base_layout(), yaxis=dict(autorange="reversed"), height=max(220, 30 * L + 90))
    return fig


def probability_text(p: float) -> str:
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"


def probability_bars(
    tokens: list[str], probs: np.ndarray, compare: np.ndarray | None = None, names=("clean", "ablated")
) -> go.Figure:
    """Top next-token probabilities as horizontal bars, most likely on top, each labelled with its
    value, on an axis that fits them; with `compare`, a second bar per token (e.g. after ablation)."""
    labels = [escape_label(f"{i + 1}. '{_short(tok)}'") for i, tok in enumerate(tokens)]  # the rank keeps them unique
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
        **_base_layout(margin=dict(l=4, r=24, t=TOP_MARGIN, b=8)),
        barmode="group",
        showlegend=compare is not None,
        legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
        xaxis=dict(title="probability", range=[0, top * 1.25 or 1.0], showgrid=True),
        yaxis=dict(autorange="reversed", type="category", automargin=True),
        height=max(240, 24 * len(tokens) * (2 if compare is not None else 1) + 70),
    )
    return fig


def token_line(
    hover_labels: list[str], series: dict[str, np.ndarray], y_title: str, extra_hover: dict | None = None
) -> go.Figure:
    """One value per token position (e.g. each next token's loss), one line per series."""
    fig = go.Figure()
    colors = (BAR_COLOR, "#e45756", "#54a24b")
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
        **_base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN, b=8)),
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
    text = [[escape_label(_short(top_tokens[layer][pos][0])) for pos in range(T)] for layer in range(L1)]
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
            colorbar=_colorbar("top p", 0, 1),
            hovertemplate="%{y}, predicting after %{customdata[0]}:<br>%{customdata[1]}<extra></extra>",
        )
    )
    fig.update_layout(
        **_base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN, b=8)),
        xaxis=dict(title="position (the prediction made there)", tickangle=-60, automargin=True, **_ticks(tokens)),
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
            colorbar=_colorbar(escape_label(title), -limit, limit),
            hovertemplate="%{y} at %{customdata}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        **_base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN, b=8)),
        xaxis=dict(tickangle=-60, automargin=True, **_ticks(tokens)),
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
        **_base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN, b=8)),
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
        **_base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN, b=8)),
        yaxis=dict(title=escape_label(y_title), automargin=True),
        height=220,
    )
    return fig
