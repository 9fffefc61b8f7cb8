"""The app's process-wide caches: `KeyedCache`, a thread-safe LRU that computes each missing value
once, and `AnalysisCache`, the analyses every visitor shares, bounded in bytes.

An analysis is one pass over one text under one model (and, for the lab, one ablation): its residual
stream, head scores and thumbnails (see `gpt2.analysis`), about 41 MB for 1,024 tokens on GPT-2
small, so the default 1 GiB holds two dozen such texts.
"""

import ctypes
import ctypes.util
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch

from ..analysis import Analysis, analyze
from ..heads import HeadOutputs
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


class _Pending:
    """A value being computed: the threads that asked for it wait for `done`, then take `value`, or
    raise `error` if the computation raised."""

    def __init__(self):
        self.done = threading.Event()
        self.value = None
        self.error: BaseException | None = None


class KeyedCache:
    """A thread-safe LRU of computed values whose sizes add up to at most `bound`.

    `get(key, compute)` returns the value cached under `key`, or calls `compute()` and keeps what it
    returns. A request for a key that another thread is computing waits for that computation and
    shares its result (or its exception: the key is then not cached, so the next request retries);
    requests for other keys go on meanwhile, since the cache's own lock is held only to look up and
    insert, never while computing. After an insert, the least recently used values go until the total
    of `size(value)` is within `bound`, except the value just inserted, which stays even alone over it.
    The default size, 1 per value, makes `bound` a count.
    """

    def __init__(self, bound: int, size: Callable[[object], int] = lambda value: 1):
        self.bound = bound
        self._size = size
        self._values: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()  # key → (value, its size)
        self._total_size = 0
        self._computing: dict[Hashable, _Pending] = {}  # only keys whose computation is under way
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], object]):
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key][0]
            pending = self._computing.get(key)
            computes_here = pending is None
            if computes_here:
                pending = self._computing[key] = _Pending()
        if not computes_here:  # another thread computes it: wait and share its outcome
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            return pending.value
        try:
            pending.value = compute()
            size = self._size(pending.value)
        except BaseException as exc:
            pending.error = exc
            raise
        finally:  # whatever happened, release the waiters; a failure caches nothing, so it is retried
            with self._lock:
                del self._computing[key]
                if pending.error is None:
                    self._insert(key, pending.value, size)
            pending.done.set()
        return pending.value

    def _insert(self, key, value, size: int) -> None:
        """Keep `value` as the most recently used, then evict from the least recently used end."""
        self._values[key] = (value, size)
        self._total_size += size
        while len(self._values) > 1 and self._total_size > self.bound:
            _, (_, evicted_size) = self._values.popitem(last=False)
            self._total_size -= evicted_size

    def keys(self) -> list:
        """The cached keys, least recently used first."""
        with self._lock:
            return list(self._values)

    @property
    def total_size(self) -> int:
        return self._total_size

    def __len__(self) -> int:
        return len(self._values)


@dataclass
class Entry:
    analysis: Analysis
    tokens: list[str]  # each token's own text

    @property
    def nbytes(self) -> int:
        return self.analysis.nbytes + sum(len(t) for t in self.tokens)


def _nbytes(value: "Entry | torch.Tensor") -> int:
    """What an analysis entry or a layer's head outputs holds."""
    return value.numel() * value.element_size() if isinstance(value, torch.Tensor) else value.nbytes


class AnalysisCache:
    """The analyses every visitor shares, keyed by (model name, token ids, ablation), at most
    `budget_bytes` of them; two identical requests at once run one pass. The same budget holds the
    head outputs a text's QK attributions recompute (`head_outputs`), a layer at a time."""

    def __init__(self, budget_bytes: int = 1 << 30):
        self._entries = KeyedCache(budget_bytes, size=_nbytes)

    def get(self, model_name: str, model, ids, ablation: Ablation | None = None) -> Entry:
        ran_a_pass = False

        def run_pass() -> Entry:
            nonlocal ran_a_pass
            ran_a_pass = True
            analysis = analyze(model, ids) if ablation is None else ablated_analysis(model, ids, ablation)
            tokenizer = get_tokenizer()
            return Entry(analysis, [tokenizer.token_text(i) for i in analysis.ids])

        entry = self._entries.get((model_name, tuple(ids), ablation), run_pass)
        if ran_a_pass:  # the pass's scratch memory and any evicted entries are free now
            release_freed_memory()
        return entry

    def head_outputs(
        self, model_name: str, model, entry: Entry, ablation: Ablation | None = None
    ) -> "CachedHeadOutputs":
        """The text's head outputs (`gpt2.heads.HeadOutputs`), each layer recomputed once and kept here."""
        return CachedHeadOutputs(
            self._entries, (model_name, tuple(entry.analysis.ids), ablation), model, entry.analysis
        )

    @property
    def budget_bytes(self) -> int:
        return self._entries.bound

    @property
    def nbytes(self) -> int:
        return self._entries.total_size

    def __len__(self) -> int:
        return len(self._entries)


class CachedHeadOutputs(HeadOutputs):
    """`HeadOutputs` whose layers live in the analysis cache, under the text's key and the layer, so
    they count in its byte budget and go when it needs the room."""

    def __init__(self, values: KeyedCache, text_key: tuple, model, analysis: Analysis):
        super().__init__(model, analysis)
        self._values, self._text_key = values, text_key

    def get(self, layer: int) -> torch.Tensor:
        return self._values.get(
            ("head outputs", *self._text_key, layer), lambda: HeadOutputs(self.model, self.analysis).get(layer)
        )
