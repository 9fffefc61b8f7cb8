"""A process-wide LRU of analyses, bounded in bytes, shared by every visitor.

An entry is one pass over one text under one model (and, for the lab, one ablation): its residual
stream, head scores and thumbnails (see `gpt2.analysis`), about 41 MB for 1,024 tokens on GPT-2
small, so the default 1 GiB holds two dozen such texts.
"""

import ctypes
import ctypes.util
import threading
from collections import OrderedDict
from dataclasses import dataclass

from ..analysis import Analysis, analyze
from ..lab import Ablation, ablated_analysis
from ..tokenizer import get_tokenizer


def _glibc_trim():
    """glibc's malloc_trim, or None elsewhere."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _glibc_trim()


def release_freed_memory() -> None:
    """Hand memory that a pass freed back to the system. glibc keeps freed blocks of its heaps (one
    per worker thread) for reuse, so without this a server's size drifts far above what its cache
    holds; with it, the process tracks the cache's bound."""
    if _TRIM is not None:
        _TRIM(0)


@dataclass
class Entry:
    analysis: Analysis
    tokens: list[str]  # each token's own text

    @property
    def nbytes(self) -> int:
        return self.analysis.nbytes + sum(len(t) for t in self.tokens)


class AnalysisCache:
    def __init__(self, budget_bytes: int = 1 << 30):
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[tuple, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_name: str, model, ids, ablation: Ablation | None = None) -> Entry:
        key = (model_name, tuple(ids), ablation)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        analysis = analyze(model, ids) if ablation is None else ablated_analysis(model, ids, ablation)
        tokenizer = get_tokenizer()
        entry = Entry(analysis, [tokenizer.token_text(i) for i in analysis.ids])
        with self._lock:
            self._items[key] = entry
            while len(self._items) > 1 and self.nbytes > self.budget_bytes:
                self._items.popitem(last=False)
        release_freed_memory()
        return entry

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self._items.values())

    def __len__(self) -> int:
        return len(self._items)
