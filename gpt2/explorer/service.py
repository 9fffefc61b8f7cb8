"""The app's process-wide state and what both the UI and the API do with it: the model store, the
analysis cache, the export folder, and streaming a generation."""

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ..generate import stream_tokens
from .cache import AnalysisCache, release_freed_memory
from .inputs import encode_prompt, sampling_settings
from .models import ModelStore

MODELS = ModelStore()
ANALYSES = AnalysisCache(budget_bytes=int(os.environ.get("EXPLORER_CACHE_BYTES", 1 << 30)))
EXPORT_DIR = Path(tempfile.mkdtemp(prefix="gpt2-explorer-"))
STREAM_INTERVAL_S = 0.04  # the browser re-renders every chip per update: batch tokens that come faster


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
    model = MODELS.decoder(model_name, fast_decode)
    return settings, model, encode_prompt(prompt, model.config.block_size)
