"""What every figure shares: the style (sizes, colours, margins, colour bars, tick labels), token
text made visible and escaped, and the figure's JSON for the page."""

import html
import json

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from ..chart import MAX_AXIS, visible_token  # noqa: F401 - shared with the views

MAX_TICK_LABELS = 24  # tick labels drawn on one axis; hover names every cell
HEATMAP_TICK_LABELS = 16  # fewer on the square heatmap: a phone draws it under 300 px tall
TICK_CHARS = 8  # characters of a token shown in a tick label
MASKED_COLOR = "rgba(128, 128, 128, 0.22)"
COLORSCALE = "Viridis"
PLOT_CONFIG = {"displaylogo": False, "displayModeBar": False}
TOP_MARGIN = 10  # the component's label sits above the plot (see the app's CSS)
DIVERGING = "RdBu"
BAR_COLOR = "#4c78a8"
HIGHLIGHT = "crimson"
GRID_GAP, GRID_MASKED = "rgba(0,0,0,0)", "rgb(200,200,200)"


def escape_label(text: str) -> str:
    """Make text safe for plotly labels and hover text: its pseudo-HTML shows as literal characters."""
    return html.escape(text, quote=True)


def token_label(token: str, position: int) -> str:
    """ "'tok' (i)", escaped: how hover text names a token."""
    return escape_label(f"'{visible_token(token)}' ({position})")


def short_token(token: str) -> str:
    shown = visible_token(token)
    return shown if len(shown) <= TICK_CHARS else shown[: TICK_CHARS - 1] + "…"


def position_ticks(tokens: list[str]) -> dict:
    """Ticks for a numeric position axis: short escaped token labels, at most MAX_TICK_LABELS."""
    step = max(1, -(-len(tokens) // MAX_TICK_LABELS))
    positions = list(range(0, len(tokens), step))
    return dict(
        tickmode="array", tickvals=positions, ticktext=[escape_label(short_token(tokens[i])) for i in positions]
    )


def base_layout(**extra) -> dict:
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


def colorbar(title: str, lo: float, hi: float) -> dict:
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
    fig.update_layout(**base_layout(height=height))
    return fig
