"""Many users at once against the real app on 127.0.0.1: no errors, every answer belongs to its own
prompt, fair latency, bounded memory. Bounded in requests and time; loopback only."""

import statistics
import threading
import time

import psutil
import pytest

from gpt2 import explorer as ex
from gpt2.tokenizer import get_tokenizer

gradio_client = pytest.importorskip("gradio_client")
pytestmark = pytest.mark.slow

USERS = 16
ROUNDS = 7  # each round: one /generate and one /attention call → 16 × 7 × 2 = 224 requests
TIME_LIMIT_S = 240


def test_sixteen_concurrent_sessions(app_process):
    server = psutil.Process(app_process.pid)
    warm = gradio_client.Client(app_process.url, verbose=False)
    for _ in range(3):  # warm up: model loaded, caches and allocator settled
        warm.predict("warm up " * 20, ex.BUNDLED_NAME, 4, 0.0, 0, 1.0, 0, api_name="/generate")
        warm.predict("warm up " * 20, ex.BUNDLED_NAME, 0, 0, api_name="/attention")
    rss_before = server.memory_info().rss

    tok = get_tokenizer()
    latencies: list[float] = []
    failures: list[str] = []
    served = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + TIME_LIMIT_S

    def user(n: int):
        client = gradio_client.Client(app_process.url, verbose=False)
        prompt = f"User {n} asks about the {['king', 'queen', 'duke', 'fool'][n % 4]} number {n * 7919}:"
        for round_ in range(ROUNDS):
            if time.monotonic() > deadline:
                failures.append(f"user {n}: out of time")
                return
            try:
                start = time.monotonic()
                text = client.predict(prompt, ex.BUNDLED_NAME, 4, 0.0, 0, 1.0, 0, api_name="/generate")
                middle = time.monotonic()
                attention = client.predict(prompt, ex.BUNDLED_NAME, round_ % 6, n % 4, api_name="/attention")
                end = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - every failure is reported
                failures.append(f"user {n}: {exc}")
                return
            if not text.startswith(prompt):
                failures.append(f"user {n}: /generate answered another prompt: {text[:60]!r}")
            if "".join(attention["tokens"]) != prompt or len(attention["attention"]) != len(tok.encode(prompt)):
                failures.append(f"user {n}: /attention answered another prompt: {attention['tokens'][:5]}")
            with lock:
                latencies.extend([middle - start, end - middle])
                served[0] += 2

    threads = [threading.Thread(target=user, args=(n,)) for n in range(USERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIME_LIMIT_S + 30)
    rss_after = server.memory_info().rss

    assert failures == []
    assert served[0] == USERS * ROUNDS * 2 >= 200
    latencies.sort()
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * len(latencies)) - 1]
    print(
        f"\n{served[0]} requests from {USERS} concurrent sessions: p50 {p50:.2f} s, p95 {p95:.2f} s; "
        f"server RSS {rss_before / 2**20:.0f} MB → {rss_after / 2**20:.0f} MB"
    )
    assert rss_after - rss_before < 300 * 2**20
