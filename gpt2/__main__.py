"""Command line: `python -m gpt2 generate --prompt "..."` streams a continuation to stdout."""

import argparse
import sys

from .generate import SamplingError, SamplingSettings, stream_tokens
from .model import GPT2
from .paths import BUNDLED_MODEL_NAME
from .tokenizer import TokenizerError, get_tokenizer
from .weights import ModelLoadError

DEFAULTS = SamplingSettings()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gpt2", description="GPT-2 from scratch.")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser(
        "generate",
        help="stream a continuation of a prompt to stdout",
        description="Stream a continuation of a prompt to stdout. The sampling defaults are the app's.",
    )
    gen.add_argument(
        "--model",
        default=BUNDLED_MODEL_NAME,
        help=f"'{BUNDLED_MODEL_NAME}' (the bundled model, the default), a Hub name (gpt2, gpt2-medium, "
        "gpt2-large, gpt2-xl, distilgpt2) or a checkpoint directory in Hugging Face's layout",
    )
    gen.add_argument("--prompt", required=True, help="text to continue")
    gen.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULTS.max_new_tokens,
        help=f"how many tokens to generate (default {DEFAULTS.max_new_tokens})",
    )
    gen.add_argument(
        "--temperature",
        type=float,
        default=DEFAULTS.temperature,
        help=f"sampling temperature; 0 means greedy (default {DEFAULTS.temperature})",
    )
    gen.add_argument(
        "--top-k",
        type=int,
        default=DEFAULTS.top_k,
        help=f"sample only among the k most likely tokens; 0 switches it off (default {DEFAULTS.top_k})",
    )
    gen.add_argument(
        "--top-p",
        type=float,
        default=DEFAULTS.top_p,
        help="nucleus sampling: the smallest set of tokens whose probability reaches p, in (0, 1] (default: off)",
    )
    gen.add_argument("--seed", type=int, default=None, help="random seed, for repeatable samples")
    gen.add_argument("--stop-at-eot", action="store_true", help="stop when the model emits <|endoftext|>")
    return parser.parse_args(argv)


def generate_command(args) -> None:
    settings = SamplingSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        stop_at_eot=args.stop_at_eot,
    )
    tokenizer = get_tokenizer()
    prompt_ids = tokenizer.encode(args.prompt)
    if not prompt_ids:
        raise SamplingError("the prompt is empty")
    model = GPT2.from_pretrained(args.model)
    decoder = tokenizer.incremental_decoder()
    sys.stdout.write(args.prompt)
    for token in stream_tokens(model, prompt_ids, settings):
        sys.stdout.write(decoder.push(token))
        sys.stdout.flush()
    sys.stdout.write(decoder.flush() + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        generate_command(args)
    except (ModelLoadError, SamplingError, TokenizerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
