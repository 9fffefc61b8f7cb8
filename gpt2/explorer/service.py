"""The app's process-wide state and what both the UI and the API do with it: the stores (models,
analyses, export folders), made once when the app is built (or a handler first needs them), never
at import; and streaming a generation."""

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ..generate import stream_tokens
from .cache import AnalysisCache, release_freed_memory
from .export import ExportFolders
from .inputs import encode_prompt, sampling_settings
from .models import ModelStore

STREAM_INTERVAL_S = 0.04  # the browser re-renders every chip per update: batch tokens that come faster


@dataclass
class Stores:
    models: ModelStore  # loaded models and their int8 copies, shared by every visitor
    analyses: AnalysisCache  # one pass per (model, text, ablation), bounded in bytes
    exports: ExportFolders  # one download folder per visitor's session


_stores: Stores | None = None
_stores_lock = threading.Lock()


def stores() -> Stores:
    """The process's stores, made on first use (EXPLORER_CACHE_BYTES bounds the analyses, 1 GiB by default)."""
    global _stores
    with _stores_lock:
        if _stores is None:
            budget = int(os.environ.get("EXPLORER_CACHE_BYTES", 1 << 30))
            _stores = Stores(ModelStore(), AnalysisCache(budget_bytes=budget), ExportFolders())
        return _stores


def models() -> ModelStore:
    return stores().models


def analyses() -> AnalysisCache:
    return stores().analyses


def throttled(stream):
    """The items of `stream`, at most one every STREAM_INTERVAL_S, and always the last one."""
    last_update, pending = float("-inf"), None
    for item in stream:
        pending = item
        if time.monotonic() - last_update >= STREAM_INTERVAL_S:
            last_update, pending = time.monotonic(), None
            yield item
    if pending is not None:
        yield pending


def stream_text(model, prompt_ids: list[int], settings) -> Iterator[list[int]]:
    """Yield every token id so far after each new token; the memory the generation freed goes back
    to the system when it ends or is stopped (see `release_freed_memory`)."""
    ids = list(prompt_ids)
    try:
        for token in stream_tokens(model, prompt_ids, settings):
            ids.append(token)
            yield list(ids)
    finally:
        release_freed_memory()


def prepare(prompt, model_name, max_new_tokens, temperature, top_k, top_p, seed, fast_decode):
    """(checked settings, the model to decode with, the prompt's kept tokens)."""
    settings = sampling_settings(max_new_tokens, temperature, top_k, top_p, seed)
    model = models().decoder(model_name, fast_decode)
    return settings, model, encode_prompt(prompt, model.config.block_size)
