import sys
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpt2 import GPT2  # noqa: E402

# The hostile strings: every view must show them as literal text and run none of them.
HOSTILE_STRINGS = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "${alert(1)}",
    "javascript:alert(1)",
    "</textarea>",
    "<b>bold</b>",
)


# lines a test wants in the run's output whether it passes or not (e.g. the int8 path this CPU took)
_REPORT: list[str] = []


def report(line: str) -> None:
    _REPORT.append(line)


def pytest_terminal_summary(terminalreporter):
    if _REPORT:
        terminalreporter.section("measured on this machine")
        for line in _REPORT:
            terminalreporter.write_line(line)


@pytest.fixture
def tiny_model() -> GPT2:
    torch.manual_seed(0)
    return GPT2(vocab_size=50257, embed_dim=32, num_heads=4, num_layers=2, block_size=64).eval()


@pytest.fixture
def small_vocab_model() -> GPT2:
    torch.manual_seed(0)
    return GPT2(vocab_size=100, embed_dim=32, num_heads=4, num_layers=3, block_size=32).eval()


WORDS = ["king", "queen", "sword", "crown", "night", "day", "love", "death"]
WORDS += ["honour", "blood", "war", "peace", "rose", "thorn", "lord", "lady"]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A training text of 800 lines of 12 random words, for the trainer's tests."""
    gen = torch.Generator().manual_seed(0)
    lines = [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (12,), generator=gen).tolist()) for _ in range(800)]
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def keep_threads():
    """Training runs in the test's process set --threads; the next test gets torch's count back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# Debian's Chromium, as the browser tests and scripts/screenshots.py drive it, and their two viewports
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP, PHONE = {"width": 1440, "height": 900}, {"width": 390, "height": 844}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_server(app_process):
    """The URL of the real app."""
    return app_process.url


@contextmanager
def running_app(log_dir, *args: str, env: dict | None = None):
    """`python app.py *args` on 127.0.0.1 in a subprocess: yields its url and pid."""
    import os
    import subprocess
    import time
    import urllib.request

    port = free_port()
    env = dict(
        os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False"
    ) | (env or {})
    log_path = log_dir / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "app.py", *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"the app did not start:\n{log_path.read_text()[-3000:]}") from None
            time.sleep(0.5)
    try:
        yield SimpleNamespace(url=url, pid=proc.pid, log=log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def app_process(tmp_path_factory):
    """The real app with its bundled model."""
    with running_app(tmp_path_factory.mktemp("app")) as app:
        yield app
