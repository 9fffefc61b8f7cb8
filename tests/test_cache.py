"""The app's caches under concurrent requests: `KeyedCache` computes a missing value once however many
threads ask for it, never blocks one key on another's computation, retries after a failure and evicts
by size; `ModelStore` frees a model's int8 copy with the model; `AnalysisCache` runs one pass for two
identical requests."""

import gc
import threading
import weakref

import pytest

from gpt2 import GPT2
from gpt2.explorer import cache as cache_module
from gpt2.explorer import models as models_module
from gpt2.explorer.cache import AnalysisCache, KeyedCache
from gpt2.explorer.models import ModelStore

JOIN_TIMEOUT_S = 10  # a thread still running after this is stuck: the test fails instead of hanging
OVERLAP_S = 0.5  # how long a first computation waits for a second request to catch it under way


class SlowCompute:
    """A compute function that counts its calls. Its first call holds on until a second call starts
    or OVERLAP_S passes, so a second request made meanwhile catches it under way: a cache that makes
    that request wait adds no call, one that computes again adds one at once. Then it returns
    `make(*args)`, or raises `error`."""

    def __init__(self, make=lambda *args: object(), error: Exception | None = None):
        self.make, self.error = make, error
        self.calls: list[tuple] = []  # list.append is atomic, so threads may share it
        self.started, self.second_call = threading.Event(), threading.Event()

    def __call__(self, *args):
        self.calls.append(args)
        if len(self.calls) == 1:
            self.started.set()
            self.second_call.wait(OVERLAP_S)
        else:
            self.second_call.set()
        if self.error is not None:
            raise self.error
        return self.make(*args)


class InThread(threading.Thread):
    """Runs `fn()` and keeps its result or its exception."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.result, self.error = fn, None, None
        self.start()

    def run(self):
        try:
            self.result = self.fn()
        except Exception as exc:
            self.error = exc

    def finish(self):
        self.join(JOIN_TIMEOUT_S)
        assert not self.is_alive(), "the request is stuck"
        return self


def test_two_requests_for_one_missing_key_share_one_computation():
    cache, compute = KeyedCache(bound=10), SlowCompute()
    first = InThread(lambda: cache.get("k", compute))
    assert compute.started.wait(JOIN_TIMEOUT_S)
    second = InThread(lambda: cache.get("k", compute))
    first.finish(), second.finish()
    assert len(compute.calls) == 1
    assert first.result is second.result is cache.get("k", compute) and len(compute.calls) == 1


def test_a_slow_computation_does_not_block_another_key():
    cache, release = KeyedCache(bound=10), threading.Event()
    cache.get("cached", lambda: "hit")
    slow = InThread(lambda: cache.get("slow", lambda: release.wait(JOIN_TIMEOUT_S) and "slow"))
    try:
        other = InThread(lambda: cache.get("other", lambda: "computed")).finish()
        hit = InThread(lambda: cache.get("cached", lambda: "recomputed")).finish()
        assert other.result == "computed" and hit.result == "hit" and slow.is_alive()
    finally:
        release.set()
    assert slow.finish().result == "slow"


def test_a_failed_computation_reaches_its_waiters_and_the_next_request_retries():
    cache, compute = KeyedCache(bound=10), SlowCompute(error=ValueError("no such model"))
    first = InThread(lambda: cache.get("k", compute))
    assert compute.started.wait(JOIN_TIMEOUT_S)
    waiter = InThread(lambda: cache.get("k", compute))
    first.finish(), waiter.finish()
    assert isinstance(first.error, ValueError) and isinstance(waiter.error, ValueError)
    assert len(compute.calls) == 1 and len(cache) == 0
    retry = InThread(lambda: cache.get("k", lambda: "loaded")).finish()
    assert retry.result == "loaded" and cache.keys() == ["k"]


def test_eviction_drops_the_least_recently_used_by_size_but_never_the_newest():
    cache = KeyedCache(bound=10, size=len)
    cache.get("a", lambda: "aaaa")
    cache.get("b", lambda: "bbbb")
    cache.get("a", lambda: "recomputed")  # a is now the most recently used
    cache.get("c", lambda: "cccc")  # 12 > 10: b goes
    assert cache.keys() == ["a", "c"] and cache.total_size == 8 and cache.get("a", lambda: "") == "aaaa"
    cache.get("big", lambda: "x" * 25)  # over the bound on its own: everything else goes, it stays
    assert cache.keys() == ["big"] and cache.total_size == 25
    by_count = KeyedCache(bound=2)
    for key in "xyz":
        by_count.get(key, lambda: [])
    assert by_count.keys() == ["y", "z"] and len(by_count) == 2


@pytest.fixture
def store_of_tiny_models(monkeypatch):
    """A one-model ModelStore whose Hub models are tiny random GPT2s and whose int8 copies are
    stand-ins, made on every CPU; `quantized` lists the models it made a copy of."""

    class Int8Copy:
        def __init__(self, model):
            self.model = model

    quantized = []

    def load(cls, name, **kwargs):
        return GPT2(vocab_size=100, embed_dim=32, num_heads=4, num_layers=1, block_size=16).eval()

    def quantize(model):
        quantized.append(model)
        return Int8Copy(model)

    monkeypatch.setattr(GPT2, "from_pretrained", classmethod(load))
    monkeypatch.setattr(models_module, "int8_decoding_pays", lambda model: True)
    monkeypatch.setattr(models_module, "int8_kernel_available", lambda: True)
    monkeypatch.setattr(models_module, "quantize_int8", quantize)
    return ModelStore(capacity=1), quantized


def test_evicting_a_model_frees_its_int8_copy(store_of_tiny_models):
    store, quantized = store_of_tiny_models
    model = weakref.ref(store.get("gpt2"))
    int8 = weakref.ref(store.decoder("gpt2"))
    assert int8() is not None and store.decoder("gpt2") is int8() and len(quantized) == 1
    store.get("distilgpt2")
    quantized.clear()
    gc.collect()
    assert store.loaded() == ["distilgpt2"] and model() is None and int8() is None


def test_an_int8_copy_made_while_its_model_is_evicted_is_not_kept(store_of_tiny_models, monkeypatch):
    """Another request loads a second model, evicting the first, while the first's copy is made."""
    store, quantized = store_of_tiny_models
    quantize = models_module.quantize_int8

    def quantize_while_evicted(model):
        InThread(lambda: store.get("distilgpt2")).finish()
        return quantize(model)

    monkeypatch.setattr(models_module, "quantize_int8", quantize_while_evicted)
    int8 = weakref.ref(store.decoder("gpt2"))
    quantized.clear()
    gc.collect()
    assert store.loaded() == ["distilgpt2"] and int8() is None


def test_two_identical_analysis_requests_run_one_pass(monkeypatch, tiny_model):
    analyze = SlowCompute(make=cache_module.analyze)
    monkeypatch.setattr(cache_module, "analyze", analyze)
    analyses, ids = AnalysisCache(), list(range(300, 320))
    first = InThread(lambda: analyses.get("tiny", tiny_model, ids))
    assert analyze.started.wait(JOIN_TIMEOUT_S)
    second = InThread(lambda: analyses.get("tiny", tiny_model, list(ids)))
    first.finish(), second.finish()
    assert first.error is None and len(analyze.calls) == 1 and first.result is second.result
    assert len(analyses) == 1 and analyses.nbytes == first.result.nbytes <= analyses.budget_bytes
