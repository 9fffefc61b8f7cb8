import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpt2 import GPT2  # noqa: E402


@pytest.fixture
def tiny_model() -> GPT2:
    torch.manual_seed(0)
    return GPT2(vocab_size=50257, embed_dim=32, num_heads=4, num_layers=2, block_size=64).eval()


@pytest.fixture
def small_vocab_model() -> GPT2:
    torch.manual_seed(0)
    return GPT2(vocab_size=100, embed_dim=32, num_heads=4, num_layers=3, block_size=32).eval()
