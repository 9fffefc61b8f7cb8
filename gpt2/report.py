"""A model's report card: `python -m gpt2.report --model DIR [--data FILE]`.

Prints the configuration, parameter count, held-out validation loss, the head-score table
(previous-token on natural text, induction on random repeated tokens, first-token sink) and a few
unedited samples: what the README's model card shows.
"""

import argparse

import torch

from .data import read_corpus, split_tokens
from .loss import validation_loss
from .model import GPT2
from .paths import BUNDLED_MODEL_NAME
from .probes import head_score_table
from .tokenizer import get_tokenizer


def format_table(scores: dict[str, torch.Tensor]) -> str:
    names = list(scores)
    lines = ["| head | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    num_layers, num_heads = scores[names[0]].shape
    for layer in range(num_layers):
        for head in range(num_heads):
            values = []
            for name in names:
                value = scores[name][layer, head].item()
                best = value == scores[name].max().item()
                values.append(f"**{value:.2f}**" if best else f"{value:.2f}")
            lines.append(f"| L{layer} H{head} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gpt2.report", description=__doc__)
    parser.add_argument(
        "--model", default=BUNDLED_MODEL_NAME, help="checkpoint directory or Hub name (default: the bundled model)"
    )
    parser.add_argument(
        "--data", help="text file whose last 10%% is the validation split (default: the Shakespeare corpus)"
    )
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--prompt", default="ROMEO:\n")
    args = parser.parse_args(argv)
    model = GPT2.from_pretrained(args.model)
    split = split_tokens(read_corpus(args.data))
    config = model.config
    print(
        f"config: {config.num_layers} layers, {config.num_heads} heads, embed_dim {config.embed_dim}, block_size {config.block_size}"
    )
    print(f"parameters: {model.num_parameters():,}")
    print(f"validation loss: {validation_loss(model, split.val, config.block_size):.4f} nats/token")
    print(format_table(head_score_table(model, split)))
    tok = get_tokenizer()
    prompt = torch.tensor([tok.encode(args.prompt)])
    for seed in range(args.samples):
        out = model.generate(prompt, 80, temperature=0.8, top_k=50, seed=seed)
        print(f"--- sample {seed} (temperature 0.8, top-k 50, seed {seed}) ---")
        print(tok.decode(out[0].tolist()))


if __name__ == "__main__":
    main()
