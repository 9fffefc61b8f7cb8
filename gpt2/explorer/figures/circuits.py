"""Figures of circuits: the graph of a prediction's circuit (layers left to right) and its
faithfulness curve."""

import re

import numpy as np
import plotly.graph_objects as go

from .style import BAR_COLOR, HIGHLIGHT, TOP_MARGIN, base_layout, escape_label

CARRIES, OPPOSES = BAR_COLOR, "#e45756"  # an edge that carries the clean answer, one that works against it
NODE_COLORS = {"embed": "#888888", "head": "#4c78a8", "mlp": "#54a24b", "logits": "#222222"}
HEAD_NODE = re.compile(r"^L(\d+)H(\d+)$")
MLP_NODE = re.compile(r"^MLP(\d+)$")


def node_place(name: str, num_layers: int, num_heads: int) -> tuple[float, float, str]:
    """(x, y, kind) of a node: embed first, then each layer's heads and its MLP, logits last; a
    layer's heads stacked top to bottom and its MLP just right of them."""
    if name == "embed":
        return 0.0, (num_heads - 1) / 2, "embed"
    if name == "logits":
        return 2.0 * num_layers + 1, (num_heads - 1) / 2, "logits"
    head = HEAD_NODE.match(name)
    if head:
        return 2.0 * int(head.group(1)) + 1, float(head.group(2)), "head"
    mlp = MLP_NODE.match(name)
    if mlp:
        return 2.0 * int(mlp.group(1)) + 2, (num_heads - 1) / 2, "mlp"
    raise ValueError(f"not a circuit node: {name!r}")


def circuit_graph(nodes: list[str], edges: list[dict], num_layers: int, num_heads: int) -> go.Figure:
    """The circuit: `nodes` (names) as markers, `edges` ({src, dst, input, score}) as lines whose
    width follows |score|, head inputs marked q, k or v near their end; hover an edge's middle for
    its score. A score is the change in the logit difference when the edge is corrupted, so an edge
    that carries the clean answer scores below 0: blue; one that works against it, red. The nodes
    are the first trace, in the order of `nodes`, so a click's point number names the node."""
    place = {name: node_place(name, num_layers, num_heads) for name in nodes}
    top = max((abs(e["score"]) for e in edges), default=1.0) or 1.0
    fig = go.Figure()
    xs, ys, kinds = zip(*(place[n] for n in nodes), strict=True) if nodes else ((), (), ())
    fig.add_scatter(
        x=xs,
        y=ys,
        mode="markers+text",
        text=[escape_label(n) for n in nodes],
        textposition="top center",
        textfont=dict(size=10),
        marker=dict(size=16, color=[NODE_COLORS[k] for k in kinds], line=dict(width=1, color="white")),
        hovertemplate="%{text}<extra>click a head to open it</extra>",
        showlegend=False,
    )
    mid_x, mid_y, mid_text = [], [], []
    for edge in sorted(edges, key=lambda e: abs(e["score"])):  # the strongest drawn last, on top
        (x0, y0, _), (x1, y1, _) = place[edge["src"]], place[edge["dst"]]
        width = 0.8 + 5.2 * abs(edge["score"]) / top
        color = CARRIES if edge["score"] <= 0 else OPPOSES
        fig.add_scatter(
            x=[x0, x1], y=[y0, y1], mode="lines", line=dict(width=width, color=color), hoverinfo="skip", opacity=0.75
        )
        if edge["input"] in ("q", "k", "v"):
            fig.add_annotation(
                x=x0 + 0.82 * (x1 - x0),
                y=y0 + 0.82 * (y1 - y0),
                text=edge["input"],
                showarrow=False,
                font=dict(size=10, color=color),
                bgcolor="rgba(255,255,255,0.7)",
            )
        mid_x.append((x0 + x1) / 2)
        mid_y.append((y0 + y1) / 2)
        mid_text.append(escape_label(f"{edge['src']} → {edge['dst']} ({edge['input']}): {edge['score']:+.3f}"))
    fig.add_scatter(
        x=mid_x,
        y=mid_y,
        mode="markers",
        marker=dict(size=8, opacity=0),
        text=mid_text,
        hovertemplate="%{text}<extra></extra>",
    )
    layer_ticks = [2.0 * layer + 1.5 for layer in range(num_layers)]
    fig.update_layout(
        **base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN + 14, b=8)),
        showlegend=False,
        xaxis=dict(
            tickvals=[0, *layer_ticks, 2.0 * num_layers + 1],
            ticktext=["embed", *(f"L{layer}" for layer in range(num_layers)), "logits"],
            showgrid=False,
            zeroline=False,
            range=[-0.6, 2.0 * num_layers + 1.6],
        ),
        yaxis=dict(visible=False, autorange="reversed", range=[num_heads - 0.4, -0.8]),
        height=max(300, min(640, 40 * num_heads + 120)),
    )
    return fig


def faithfulness_curve(counts: list[int], values: list[float], shown: int) -> go.Figure:
    """Faithfulness against the number of edges kept, the circuit shown marked."""
    fig = go.Figure(
        go.Scatter(
            x=counts,
            y=np.asarray(values, dtype=np.float32),
            mode="lines+markers",
            line=dict(color=BAR_COLOR),
            hovertemplate="%{x} edges: %{y:.2f}<extra></extra>",
        )
    )
    if shown in counts:
        value = values[counts.index(shown)]
        fig.add_scatter(x=[shown], y=[value], mode="markers", marker=dict(size=12, color=HIGHLIGHT), hoverinfo="skip")
    fig.update_layout(
        **base_layout(margin=dict(l=4, r=4, t=TOP_MARGIN, b=8)),
        showlegend=False,
        xaxis=dict(title="edges kept", type="log", tickvals=counts, ticktext=[str(n) for n in counts]),
        yaxis=dict(
            title="faithfulness",
            range=[min(0.0, min(values, default=0)) - 0.05, max(1.05, max(values, default=1) + 0.05)],
        ),
        height=260,
    )
    fig.add_hline(y=1, line=dict(color="#888", dash="dot", width=1))
    return fig
