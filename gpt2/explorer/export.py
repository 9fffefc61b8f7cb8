"""Downloads: every map of a text (.npz), a figure as a standalone page (.html), a view's numbers
(.json and .csv).

The .npz is written one layer at a time, so no more than one layer's maps are ever in memory; each
layer's maps are stored as float16, whose rounding moves an attention probability (a number in
[0, 1]) by at most 2^-11 ≈ 4.9e-4.
"""

import csv
import html
import json
import zipfile
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from .. import plots
from ..analysis import layer_maps
from .cache import Entry

FLOAT16_ERROR = 2.0**-11  # the largest change float16 storage makes to a number in [0, 1]


def _write_array(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)


def save_npz(model, entry: Entry, path: Path, model_name: str) -> Path:
    """`attention_L{l}` (H, T, T) float16 for every layer, with the tokens, the model's name and the
    head scores (`score_previous_token`, ... (L, H))."""
    analysis = entry.analysis
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for layer in range(analysis.num_layers):
            _write_array(archive, f"attention_L{layer}", layer_maps(model, analysis, layer).numpy().astype(np.float16))
        _write_array(archive, "token_ids", np.asarray(analysis.ids, dtype=np.int64))
        _write_array(archive, "tokens", np.asarray(entry.tokens, dtype=str))
        _write_array(archive, "model", np.asarray(model_name))
        for name, value in analysis.scores.items():
            _write_array(archive, "score_" + name.replace(" ", "_").replace("-", "_"), value.numpy())
    return path


def text_start(tokens: list[str], chars: int = 40) -> str:
    text = "".join(tokens).strip()
    return text if len(text) <= chars else text[: chars - 1] + "…"


def save_html(fig: go.Figure, path: Path, title: str) -> Path:
    """A standalone page (plotly.js inlined, so it opens offline), titled with `title` in the page
    and above the figure; every piece of text escaped."""
    page = pio.to_html(plots.with_title(fig, title), include_plotlyjs=True, full_html=True)
    page = page.replace("<head>", f"<head><title>{html.escape(title)}</title>", 1)
    path.write_text(page, encoding="utf-8")
    return path


def save_view(folder: Path, name: str, view, title: str) -> list[Path]:
    """A lab view's numbers as .json and .csv, and its figure as .html."""
    json_path, csv_path = folder / f"{name}.json", folder / f"{name}.csv"
    json_path.write_text(
        json.dumps({"title": title, **view.data}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(view.table)
    return [json_path, csv_path, save_html(view.figure, folder / f"{name}.html", title)]
