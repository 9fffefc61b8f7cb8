"""The Gradio app: `demo` is built at import from `layout.build`; `launch` serves it.

The handlers live by tab (`generation_tab`, `attention_tab`, `lab_tab`), the components in
`widgets.w`, the words in `texts`, the page's style and script in `assets/`. This module also
exposes them under one name (`ui.run_generation`, `ui.heatmap`, …) for tests and scripts.
"""

import os
from pathlib import Path

import gradio as gr

from . import layout, service
from .attention_tab import bridge_click, export_attention, refresh_views, select_query, update_head
from .generation_tab import clear_text_views, loss_chips, run_generation, stopped, switch_model
from .lab_tab import export_lab, lab_ablate, lab_attribute, lab_loss_and_lens, lab_patch, tutorial_step
from .models import BUNDLED_NAME
from .texts import (
    ABLATED,
    ATTENTION_TAB,
    CLEAN,
    FONTS,
    LOG_OPTION,
    MEAN_OPTION,
    MONO_FONTS,
    PATCH_EXAMPLE,
    REPEATED_EXAMPLE,
    SINK_OPTION,
)
from .widgets import w

ASSETS = Path(__file__).resolve().parent / "assets"
CSS = (ASSETS / "explorer.css").read_text(encoding="utf-8")
JS = (ASSETS / "explorer.js").read_text(encoding="utf-8")
# Gradio keeps every session's last outputs (figures, API answers) until it holds this many sessions
# (10,000 by default, gigabytes on a busy Space); the least recently used go first.
SESSIONS_KEPT = 500
THEME = gr.themes.Soft(font=FONTS, font_mono=MONO_FONTS)

with gr.Blocks(title="GPT-2 Attention Explorer", fill_width=True) as demo:
    layout.build(demo)
demo.queue(default_concurrency_limit=4, max_size=64)

__all__ = [
    "ABLATED",
    "ATTENTION_TAB",
    "CLEAN",
    "LOG_OPTION",
    "MEAN_OPTION",
    "PATCH_EXAMPLE",
    "REPEATED_EXAMPLE",
    "SINK_OPTION",
    "bridge_click",
    "clear_text_views",
    "demo",
    "export_attention",
    "export_lab",
    "lab_ablate",
    "lab_attribute",
    "lab_loss_and_lens",
    "lab_patch",
    "launch",
    "loss_chips",
    "refresh_views",
    "run_generation",
    "select_query",
    "service",
    "stopped",
    "switch_model",
    "tutorial_step",
    "update_head",
]


def __getattr__(name: str):
    """A component by name (`ui.heatmap` is `widgets.w.heatmap`)."""
    if name in type(w).__annotations__:
        return getattr(w, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def launch(**kwargs):
    """Serve the app (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override the address, as on Spaces)."""
    service.MODELS.get(BUNDLED_NAME)  # load before the first request
    return demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        allowed_paths=[str(service.EXPORT_DIR)],
        state_session_capacity=SESSIONS_KEPT,
        theme=THEME,
        css=CSS,
        js=JS,
        **kwargs,
    )
