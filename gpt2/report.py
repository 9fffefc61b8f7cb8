"""A model's report card: `python -m gpt2.report --model DIR [--data FILE]`.

Prints the configuration, parameter count, held-out validation loss, the head-score table
(previous-token on natural text, induction on random repeated tokens, first-token sink) and a few
unedited samples: what the README's model card shows.
"""

import argparse

import torch

from .analysis import attention_maps, first_token_scores, induction_probe, previous_token_probe
from .train import evaluate, read_corpus, split_tokens, token_pool
from .weights import load_pretrained


def head_score_table(model, split, natural_tokens: int = 2048) -> dict[str, torch.Tensor]:
    """(L, H) previous-token, induction and first-token-sink scores of a model."""
    natural = split.val[:natural_tokens]
    window = model.config.block_size
    sinks = torch.stack(
        [first_token_scores(attention_maps(model, natural[i : i + window])) for i in range(0, len(natural), window)]
    )
    return {
        "previous-token": previous_token_probe(model, natural),
        "induction": induction_probe(model, token_pool(split.train), length=min(50, model.config.block_size // 2)),
        "first-token sink": sinks.mean(0),
    }


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
    parser.add_argument("--model", default="assets/shakespeare", help="checkpoint directory or Hub name")
    parser.add_argument(
        "--data", help="text file whose last 10%% is the validation split (default: the Shakespeare corpus)"
    )
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--prompt", default="ROMEO:\n")
    args = parser.parse_args(argv)
    model = load_pretrained(args.model)
    split = split_tokens(read_corpus(args.data))
    config = model.config
    print(
        f"config: {config.num_layers} layers, {config.num_heads} heads, embed_dim {config.embed_dim}, block_size {config.block_size}"
    )
    print(f"parameters: {model.num_parameters():,}")
    print(f"validation loss: {evaluate(model, split.val, config.block_size):.4f} nats/token")
    print(format_table(head_score_table(model, split)))
    from .tokenizer import get_tokenizer

    tok = get_tokenizer()
    prompt = torch.tensor([tok.encode(args.prompt)])
    for seed in range(args.samples):
        out = model.generate(prompt, 80, temperature=0.8, top_k=50, seed=seed)
        print(f"--- sample {seed} (temperature 0.8, top-k 50, seed {seed}) ---")
        print(tok.decode(out[0].tolist()))


if __name__ == "__main__":
    main()
