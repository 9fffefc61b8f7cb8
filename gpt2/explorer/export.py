"""Downloads: every map of a text (.npz), a figure as a standalone page (.html), a view's numbers
(.json and .csv), each written into its visitor's own folder (`ExportFolders`).

The .npz is written one layer at a time, so no more than one layer's maps are ever in memory; each
layer's maps are stored as float16, whose rounding moves an attention probability (a number in
[0, 1]) by at most 2^-11 ≈ 4.9e-4.
"""

import atexit
import csv
import html
import json
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import plotly.io as pio

from ..analysis import layer_maps
from . import figures
from .cache import Entry

FLOAT16_ERROR = 2.0**-11  # the largest change float16 storage makes to a number in [0, 1]


class ExportFolders:
    """One temporary folder per visitor's session, a subfolder per kind of export (a new export of a
    kind replaces the last one's files); a session's folder goes when the session ends (`drop`), and
    all of them when the process exits."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="gpt2-explorer-"))
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)

    def _session(self, session_hash) -> Path:
        name = re.sub(r"[^A-Za-z0-9_-]", "", str(session_hash or ""))[:64] or "local"
        return self.root / name

    def fresh(self, session_hash, kind: str) -> Path:
        """An empty folder for one export of `kind` ("attention", "lab") by this session."""
        folder = self._session(session_hash) / kind
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder

    def drop(self, session_hash) -> None:
        shutil.rmtree(self._session(session_hash), ignore_errors=True)


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


def save_html(chart, path: Path, title: str) -> Path:
    """A chart as a standalone page (plotly.js inlined, so it opens offline), titled with `title` in
    the page and above the figure; every piece of text escaped."""
    page = pio.to_html(figures.with_title(figures.draw(chart), title), include_plotlyjs=True, full_html=True)
    page = page.replace("<head>", f"<head><title>{html.escape(title)}</title>", 1)
    path.write_text(page, encoding="utf-8")
    return path


def save_view(folder: Path, name: str, view, title: str) -> list[Path]:
    """A lab view's numbers as .json and .csv, and its chart as .html."""
    json_path, csv_path = folder / f"{name}.json", folder / f"{name}.csv"
    json_path.write_text(
        json.dumps({"title": title, **view.data}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(view.table)
    return [json_path, csv_path, save_html(view.chart, folder / f"{name}.html", title)]
