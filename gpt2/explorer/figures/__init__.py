"""Plotly figures drawn from the views' data: attention heatmaps, the head grid, head-score maps,
bars, the lab's maps. The views describe a figure as a `Chart` (see `gpt2.explorer.chart`);
`draw` makes it, so numbers are computed once and drawn only for the screen and the exports.

Plotly renders a little HTML inside labels (`<b>`, `<br>`, links), so every piece of model or user
text passes through `escape_label` first. Figures carry no title in the app (the component's label
is the title); `with_title` adds one for an exported page. Backgrounds are transparent so the
page's light or dark theme shows through. Maps longer than `MAX_AXIS` tokens are pooled by the
views so no figure grows past about a megabyte.
"""

import plotly.graph_objects as go

from ..chart import MAX_AXIS, Chart, visible_token
from .attention import attention_heatmap, head_grid, layer_head_map, text_heatmap
from .circuits import circuit_graph, faithfulness_curve
from .heads import composition_map, partner_bars, qk_matrix, qk_parts, role_map
from .series import (
    bar_series,
    layer_position_map,
    lens_map,
    line_series,
    probability_bars,
    probability_text,
    token_line,
)
from .style import escape_label, figure_bytes, figure_json, placeholder, token_label, with_title
from .training import head_lines, training_curves

DRAWINGS = {
    fn.__name__: fn
    for fn in (
        text_heatmap,
        head_grid,
        layer_head_map,
        bar_series,
        layer_position_map,
        lens_map,
        line_series,
        probability_bars,
        token_line,
        qk_parts,
        qk_matrix,
        composition_map,
        partner_bars,
        role_map,
        circuit_graph,
        faithfulness_curve,
        training_curves,
        head_lines,
    )
}


def draw(chart: Chart) -> go.Figure:
    """The figure a chart describes."""
    return DRAWINGS[chart.kind](**chart.args)


__all__ = [
    "DRAWINGS",
    "MAX_AXIS",
    "Chart",
    "attention_heatmap",
    "bar_series",
    "draw",
    "escape_label",
    "figure_bytes",
    "figure_json",
    "head_grid",
    "layer_head_map",
    "layer_position_map",
    "lens_map",
    "line_series",
    "placeholder",
    "probability_bars",
    "probability_text",
    "text_heatmap",
    "token_label",
    "token_line",
    "visible_token",
    "with_title",
]
