"""The Gradio app: `build_demo()` makes it (nothing happens at import); `launch` serves it.

The handlers live by tab (`generation_tab`, `attention_tab`, `heads_tab`, `lab_tab`; plot clicks in
`clicks`), the components in
`widgets.w`, the words in `texts`, the page's stylesheet and script in the top-level `assets/`
(shipped inside the package by `pip install .`). This module also exposes them under one name
(`ui.run_generation`, and `ui.heatmap` once the app is built) for tests and scripts.
"""

import json
import os
from pathlib import Path

import gradio as gr

from . import layout, service
from .attention_tab import export_attention, refresh_views, select_query, show_qk_matrix, update_head
from .circuit_tab import lab_attribution_patch, lab_circuit, lab_patch, load_task, tutorial_circuit
from .clicks import bridge_click
from .generation_tab import clear_text_views, loss_chips, run_generation, stopped, switch_model
from .heads_tab import export_weights, show_card, show_composition, show_model_heads, show_scores
from .lab_tab import export_lab, lab_ablate, lab_attribute, lab_loss_and_lens, tutorial_step
from .models import BUNDLED_NAME
from .texts import (
    ABLATED,
    ATTENTION_TAB,
    CLEAN,
    FONTS,
    LOG_OPTION,
    MEAN_OPTION,
    MODEL_ROLES,
    MONO_FONTS,
    PATCH_EXAMPLE,
    REPEATED_EXAMPLE,
    SINK_OPTION,
    WEIGHTS_TAB,
)
from .widgets import CLICK_TARGETS, w

# Gradio keeps every session's last outputs (figures, API answers) until it holds this many sessions
# (10,000 by default, gigabytes on a busy Space); the least recently used go first.
SESSIONS_KEPT = 500
CLICK_TARGETS_MARK = "__CLICK_TARGETS__"  # where the page's script takes the list of clickable plots

__all__ = [
    "ABLATED",
    "ATTENTION_TAB",
    "CLEAN",
    "LOG_OPTION",
    "MEAN_OPTION",
    "MODEL_ROLES",
    "PATCH_EXAMPLE",
    "REPEATED_EXAMPLE",
    "SINK_OPTION",
    "WEIGHTS_TAB",
    "assets_dir",
    "bridge_click",
    "build_demo",
    "clear_text_views",
    "export_attention",
    "export_lab",
    "export_weights",
    "lab_ablate",
    "lab_attribute",
    "lab_attribution_patch",
    "lab_circuit",
    "lab_loss_and_lens",
    "lab_patch",
    "launch",
    "load_task",
    "loss_chips",
    "page_script",
    "refresh_views",
    "run_generation",
    "select_query",
    "show_card",
    "show_composition",
    "show_model_heads",
    "show_qk_matrix",
    "show_scores",
    "service",
    "stopped",
    "switch_model",
    "tutorial_circuit",
    "tutorial_step",
    "update_head",
]


def __getattr__(name: str):
    """A component by name (`ui.heatmap` is `widgets.w.heatmap`, once `build_demo` has run)."""
    if name in type(w).__annotations__:
        return getattr(w, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def assets_dir() -> Path:
    """The app's front-end files: inside the installed package, else the repository's `assets/`."""
    installed = Path(__file__).resolve().parent / "assets"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[2] / "assets"


def page_script() -> str:
    """The page's script, told which plots' clicks to send to Python (`widgets.CLICK_TARGETS`)."""
    script = (assets_dir() / "explorer.js").read_text(encoding="utf-8")
    targets = {owner: target.reveal for owner, target in CLICK_TARGETS.items()}
    return script.replace(CLICK_TARGETS_MARK, json.dumps(targets))


def build_demo() -> gr.Blocks:
    """The app: the stores, the page and its wiring (see `layout.build`)."""
    service.stores()
    with gr.Blocks(title="GPT-2 Attention Explorer", fill_width=True) as demo:
        layout.build(demo)
    demo.queue(default_concurrency_limit=4, max_size=64)
    return demo


def launch(demo: gr.Blocks | None = None, **kwargs):
    """Serve the app (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override the address, as on Spaces)."""
    demo = demo or build_demo()
    service.models().get(BUNDLED_NAME)  # load before the first request
    return demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        allowed_paths=[str(service.stores().exports.root)],
        state_session_capacity=SESSIONS_KEPT,
        theme=gr.themes.Soft(font=FONTS, font_mono=MONO_FONTS),
        css=(assets_dir() / "explorer.css").read_text(encoding="utf-8"),
        js=page_script(),
        **kwargs,
    )
