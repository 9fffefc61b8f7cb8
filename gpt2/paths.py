"""Where the files the package ships live: GPT-2's vocabulary and the bundled Shakespeare model.

They are package data (`gpt2/assets/`), so they are found from any working directory, also after
`pip install .`.
"""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
VOCAB_FILE = ASSETS_DIR / "gpt2.tiktoken"  # tiktoken's format, sha256-checked when read
BUNDLED_MODEL_NAME = "shakespeare"  # `GPT2.from_pretrained("shakespeare")` loads it
BUNDLED_MODEL_DIR = ASSETS_DIR / "shakespeare"  # config.json + model.safetensors, Hugging Face's layout
