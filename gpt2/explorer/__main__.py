"""Start the app: `gpt2-explorer [--model DIR ...]` (or `python -m gpt2.explorer`).

Each `--model DIR` (a checkpoint in Hugging Face's layout, e.g. one written by `python -m
gpt2.train`) joins the model list under its directory's name; so does each directory in the
environment variable EXPLORER_MODELS (separated by the system's path separator), which is how a
Hugging Face Space passes them. A directory that cannot be loaded stops the start-up with one line.
"""

import argparse
import os
import sys

from ..weights import ModelLoadError

MODELS_ENV = "EXPLORER_MODELS"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gpt2-explorer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", action="append", default=[], metavar="DIR", help="serve this checkpoint directory too (repeatable)"
    )
    parser.add_argument("--host", help="address to serve on (default: GRADIO_SERVER_NAME, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: GRADIO_SERVER_PORT, else 7860)")
    return parser.parse_args(argv)


def main(argv=None, demo=None) -> int:
    """Start the app (`demo`, else a new one) with the command line's models."""
    args = parse_args(argv)
    if args.host:
        os.environ["GRADIO_SERVER_NAME"] = args.host
    if args.port:
        os.environ["GRADIO_SERVER_PORT"] = str(args.port)
    from .service import models
    from .ui import launch

    directories = [d for d in os.environ.get(MODELS_ENV, "").split(os.pathsep) if d.strip()] + args.model
    for directory in directories:
        try:
            name = models().add_local(directory)
        except ModelLoadError as exc:
            print(f"error: --model {directory}: {exc}", file=sys.stderr)
            return 2
        print(f"serving {directory} as {name!r}", file=sys.stderr)
    launch(demo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
