"""Task generators: clean/corrupted prompt pairs with their answers, ready for patching, attribution
and `find_circuit` (docs/lab.md, "Circuits").

- `induction`: a repeated list of words the model knows, `w_0 … w_{n-1} . w_0 … w_k` (answer
  `w_{k+1}`); the corrupted prompt replaces the first `w_k` by another word, so the repeat is broken
  only in the previous-token information at `w_{k+1}`'s first position. Works on every model.
- `names`: indirect-object identification, "When Mary and John went to the store, John gave a drink
  to" → " Mary"; the corrupted prompt repeats the other name (" John" is then the answer). For
  GPT-2-sized models: small ones do not know it.
"""

import random
import re
from dataclasses import dataclass

import torch

from ..heads.common import known_tokens
from ..lab.pairs import MAX_PAIRS
from ..tokenizer import get_tokenizer
from .common import CircuitError

INDUCTION_WORDS = 10


@dataclass
class Task:
    """Pairs of prompts (token ids) and each pair's (clean, corrupted) answer ids."""

    name: str
    clean: list[list[int]]
    corrupted: list[list[int]]
    answers: list[tuple[int, int]]

    def texts(self) -> list[tuple[str, str]]:
        tok = get_tokenizer()
        return [(tok.decode(c), tok.decode(r)) for c, r in zip(self.clean, self.corrupted, strict=True)]


def _check_pairs(pairs: int) -> None:
    if not isinstance(pairs, int) or not 1 <= pairs <= MAX_PAIRS:
        raise CircuitError(f"a task makes 1 to {MAX_PAIRS} pairs, not {pairs!r}")


def known_words(model) -> list[int]:
    """Ids of single-token lowercase words with a leading space (" sword") among the tokens the model
    has learnt (`gpt2.heads.known_tokens`)."""
    tok = get_tokenizer()
    words = [int(i) for i in known_tokens(model) if re.fullmatch(r" [a-z]{3,}", tok.decode([int(i)]))]
    if len(words) < INDUCTION_WORDS + 1:
        raise CircuitError("this model knows too few single-token words to build the induction task")
    return words


@torch.no_grad()
def induction(model, pairs: int = 1, seed: int = 0, words: int = INDUCTION_WORDS) -> Task:
    """`pairs` induction pairs of `words` known words repeated up to a random one; answers: the word
    that follows it (clean) and the corrupted prompt's own top next token, or its second where that
    is the same word."""
    _check_pairs(pairs)
    pool, rng = known_words(model), random.Random(seed)
    dot = get_tokenizer().encode(".")[0]
    clean, corrupted, answers = [], [], []
    for _ in range(pairs):
        *seq, other = rng.sample(pool, words + 1)
        k = rng.randrange(words // 2, words - 1)  # A = seq[k], B = seq[k + 1]
        prompt = [*seq, dot, *seq[: k + 1]]
        broken = list(prompt)
        broken[k] = other
        logits = model(torch.tensor([broken], device=model.wte.weight.device), only_last=True)[0, -1]
        top = logits.topk(2).indices.tolist()
        clean.append(prompt), corrupted.append(broken)
        answers.append((seq[k + 1], top[1] if top[0] == seq[k + 1] else top[0]))
    return Task("induction", clean, corrupted, answers)


NAMES = [" Mary", " John", " Alice", " Bob", " Sarah", " James", " Emma", " David", " Anna", " Paul", " Kate", " Tom"]
PLACES = [" store", " park", " school", " garden", " station", " market"]
OBJECTS = [" drink", " book", " letter", " ring", " flower", " key"]
TEMPLATES = [
    "When{a} and{b} went to the{place},{s} gave a{thing} to",
    "After{a} and{b} went to the{place},{s} handed a{thing} to",
    "Then{a} and{b} had a long day at the{place}, and{s} gave a{thing} to",
]


def names(pairs: int = 1, seed: int = 0) -> Task:
    """`pairs` IOI pairs: the clean prompt names the indirect object once (answer: it), the corrupted
    one repeats it instead of the subject (answer: the subject). Every name is one token."""
    _check_pairs(pairs)
    tok, rng = get_tokenizer(), random.Random(seed)
    clean, corrupted, answers = [], [], []
    for _ in range(pairs):
        a, b = rng.sample(NAMES, 2)
        template = rng.choice(TEMPLATES)
        fill = {"place": rng.choice(PLACES), "thing": rng.choice(OBJECTS)}
        clean.append(tok.encode(template.format(a=a, b=b, s=b, **fill)))
        corrupted.append(tok.encode(template.format(a=a, b=b, s=a, **fill)))
        answers.append((tok.encode(a)[0], tok.encode(b)[0]))
    return Task("names", clean, corrupted, answers)


def make_task(model, name: str, pairs: int = 1, seed: int = 0) -> Task:
    """The task called `name` ("induction" or "names")."""
    if name == "induction":
        return induction(model, pairs, seed)
    if name == "names":
        return names(pairs, seed)
    raise CircuitError(f"unknown task {str(name)[:20]!r}: use induction or names")
