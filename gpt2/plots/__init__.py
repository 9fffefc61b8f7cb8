"""Plotly figures from arrays: attention heatmaps, the head grid, head-score maps, bars, the lab's maps.

Plotly renders a little HTML inside labels (`<b>`, `<br>`, links), so every piece of model or user
text passes through `escape_label` first. Figures carry no title in the app (the component's label
is the title); `with_title` adds one for an exported page. Backgrounds
are transparent so the page's light or dark theme shows through. Maps longer than `MAX_AXIS`
tokens are pooled by the caller so no figure grows past about a megabyte.
"""

from .attention import attention_heatmap, head_grid, layer_head_map
from .series import (
    bar_series,
    layer_position_map,
    lens_map,
    line_series,
    probability_bars,
    probability_text,
    token_line,
)
from .style import (
    MAX_AXIS,
    escape_label,
    figure_bytes,
    figure_json,
    placeholder,
    token_label,
    visible_token,
    with_title,
)

__all__ = [
    "MAX_AXIS",
    "attention_heatmap",
    "bar_series",
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
    "token_label",
    "token_line",
    "visible_token",
    "with_title",
]
