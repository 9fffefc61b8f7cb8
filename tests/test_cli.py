"""`python -m gpt2 generate`: streams text, explains its flags, and fails with one line on stderr."""

import os
import subprocess
import sys

import pytest
import torch

from gpt2 import get_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "gpt2", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from gpt2 import GPT2

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt")
    GPT2(50257, 32, 2, 2, 64).save_pretrained(path)
    return path


def test_help_explains_every_flag():
    out = cli("generate", "--help").stdout
    for flag in ("--model", "--prompt", "--max-new-tokens", "--temperature", "--top-k", "--top-p", "--seed"):
        assert flag in out
    assert "greedy" in out and "default 0.8" in out and "default 50" in out


def test_the_defaults_are_the_apps_and_read_well():
    """temperature 0.8 and top-k 50 (not 1 and off), on the bundled model, from any directory."""
    from gpt2.__main__ import parse_args
    from gpt2.generate import SamplingSettings

    args = parse_args(["generate", "--prompt", "x"])
    assert (args.temperature, args.top_k, args.model) == (
        SamplingSettings().temperature,
        SamplingSettings().top_k,
        "shakespeare",
    )
    result = cli("generate", "--prompt", "ROMEO:", "--max-new-tokens", "5", "--seed", "1")
    assert result.returncode == 0 and result.stdout.startswith("ROMEO:") and len(result.stdout) > len("ROMEO:\n")


def test_generate_streams_the_greedy_continuation(checkpoint):
    from gpt2 import GPT2

    result = cli(
        "generate", "--model", str(checkpoint), "--prompt", "Hello", "--max-new-tokens", "12", "--temperature", "0"
    )
    assert result.returncode == 0, result.stderr
    tok = get_tokenizer()
    ids = tok.encode("Hello")
    expected = GPT2.from_pretrained(checkpoint).generate(torch.tensor([ids]), 12, temperature=0)[0].tolist()
    assert result.stdout == tok.decode(expected) + "\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (("--model", "no-such-model", "--prompt", "hi"), "unknown model"),
        (("--prompt", "hi", "--top-p", "1.5"), "top_p"),
        (("--prompt", "hi", "--temperature", "-1"), "temperature"),
        (("--prompt", "", "--max-new-tokens", "3"), "empty"),
        (("--prompt", "hi", "--top-k", "-1"), "top_k"),
    ],
)
def test_errors_are_one_line_on_stderr(args, message):
    result = cli("generate", *args)
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
