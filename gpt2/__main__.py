"""Command line: `python -m gpt2 generate --model NAME_OR_PATH --prompt "..."` streams text to stdout."""

import argparse
import sys

from .generate import SamplingError, check_sampling_args
from .tokenizer import BUNDLED_MODEL_DIR, TokenizerError, get_tokenizer
from .weights import ModelLoadError, load_pretrained


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gpt2", description="GPT-2 from scratch.")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="stream a continuation of a prompt to stdout")
    gen.add_argument(
        "--model",
        default=str(BUNDLED_MODEL_DIR),
        help="Hub name (gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2) or a checkpoint directory; default: the bundled Shakespeare model",
    )
    gen.add_argument("--prompt", required=True, help="text to continue")
    gen.add_argument(
        "--max-new-tokens", type=_non_negative_int, default=100, help="how many tokens to generate (default 100)"
    )
    gen.add_argument(
        "--temperature", type=float, default=1.0, help="sampling temperature; 0 means greedy (default 1.0)"
    )
    gen.add_argument(
        "--top-k",
        type=_non_negative_int,
        default=None,
        help="sample only among the k most likely tokens (0 or unset: off)",
    )
    gen.add_argument(
        "--top-p",
        type=float,
        default=None,
        help="nucleus sampling: the smallest set of tokens whose probability reaches p, in (0, 1]",
    )
    gen.add_argument("--seed", type=int, default=None, help="random seed, for repeatable samples")
    gen.add_argument("--stop-at-eot", action="store_true", help="stop when the model emits <|endoftext|>")
    return parser.parse_args(argv)


def generate_command(args) -> None:
    check_sampling_args(args.max_new_tokens, args.temperature, args.top_k, args.top_p, vocab_size=50257)
    tokenizer = get_tokenizer()
    model = load_pretrained(args.model)
    prompt_ids = tokenizer.encode(args.prompt)
    if not prompt_ids:
        raise SamplingError("the prompt is empty")
    decoder = tokenizer.incremental_decoder()
    sys.stdout.write(args.prompt)
    for token in model.stream(
        prompt_ids,
        args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k or None,
        top_p=args.top_p,
        seed=args.seed,
        stop_at_eot=args.stop_at_eot,
    ):
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
