"""GPT-2 Attention Explorer: `python app.py [--model DIR ...]` serves on 127.0.0.1:7860.

This file is the Hugging Face Spaces entry point; the app itself is `gpt2.explorer` (the page in
`gpt2/explorer/layout.py`, the handlers by tab beside it, the stylesheet and script in `assets/`),
also started by the `gpt2-explorer` command after `pip install .[app]`.
"""

import sys

from gpt2.explorer.__main__ import main
from gpt2.explorer.ui import build_demo

demo = build_demo()  # Gradio's reload mode and Spaces look for `demo`

if __name__ == "__main__":
    sys.exit(main(demo=demo))
