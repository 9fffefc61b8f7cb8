"""Clean/corrupted prompt pairs and their answers, shared by patching and `gpt2.circuits`
(docs/lab.md, "Patching"): one pair, or a prompt set of up to `MAX_PAIRS` pairs whose logit
difference is the mean over the pairs, each with its own answers."""

from collections.abc import Sequence

import torch

from ..tokenizer import get_tokenizer
from .common import LabError

MAX_PAIRS = 16

Answer = int | str  # a token id, or its text such as " Juliet"


def _is_prompt(ids) -> bool:
    """A prompt is a flat sequence of token ids (a list, or a 1-D tensor); a set is a list of them."""
    if isinstance(ids, torch.Tensor):
        return ids.dim() <= 1 or ids.size(0) == 1
    return len(ids) == 0 or not isinstance(ids[0], (Sequence, torch.Tensor))


def _ids(prompt) -> list[int]:
    return torch.as_tensor(prompt, dtype=torch.long).flatten().tolist()


def prompt_pairs(clean_ids, corrupted_ids) -> list[tuple[list[int], list[int]]]:
    """[(clean, corrupted), ...] from two prompts (one pair) or two lists of prompts (a set, pair by
    pair). The two prompts of a pair need the same number of tokens; different pairs may differ."""
    single = _is_prompt(clean_ids)
    if single != _is_prompt(corrupted_ids):
        raise LabError("give two prompts, or two lists of prompts of the same length (a prompt set)")
    cleans, corrupteds = ([clean_ids], [corrupted_ids]) if single else (list(clean_ids), list(corrupted_ids))
    if len(cleans) != len(corrupteds):
        raise LabError(f"a prompt set needs a corrupted prompt for each clean one: {len(cleans)} and {len(corrupteds)}")
    if not 1 <= len(cleans) <= MAX_PAIRS:
        raise LabError(f"a prompt set holds 1 to {MAX_PAIRS} pairs, not {len(cleans)}")
    pairs = []
    for index, (clean, corrupted) in enumerate(zip(cleans, corrupteds, strict=True)):
        clean, corrupted = _ids(clean), _ids(corrupted)
        where = "" if single else f"pair {index + 1}: "
        if len(clean) != len(corrupted):
            raise LabError(
                f"{where}the prompts must have the same number of tokens: clean has {len(clean)}, corrupted {len(corrupted)}"
            )
        if not clean:
            raise LabError(f"{where}the prompts are empty")
        pairs.append((clean, corrupted))
    return pairs


def token_id(answer: Answer, vocab_size: int) -> int:
    """An answer's token id: an id, or a text that must be exactly one token (" Juliet")."""
    if isinstance(answer, str):
        ids = get_tokenizer().encode(answer)
        if len(ids) != 1:
            raise LabError(f"the answer {answer[:30]!r} is {len(ids)} tokens: an answer must be exactly one token")
        answer = ids[0]
    answer = int(answer)
    if not 0 <= answer < vocab_size:
        raise LabError(f"the answer {answer} is not a token id of this model (0 to {vocab_size - 1})")
    return answer


def pair_answers(answers, count: int) -> list[tuple[Answer, Answer] | None]:
    """Each pair's answers from None (each prompt's top next token), one (clean, corrupted) for every
    pair, or a list of them, one per pair."""
    if answers is None:
        return [None] * count
    answers = list(answers)
    if len(answers) == 2 and all(isinstance(a, (int, str)) for a in answers):
        return [tuple(answers)] * count
    if len(answers) != count or any(a is not None and len(a) != 2 for a in answers):
        raise LabError(f"give two answers (clean, corrupted), or one such pair for each of the {count} prompt pairs")
    return [None if a is None else tuple(a) for a in answers]


def resolve_answers(answers, clean_logits: torch.Tensor, corrupted_logits: torch.Tensor, where: str = ""):
    """(answer_clean, answer_corrupted) as ids: the given ones, or each prompt's top next token from
    its last position's logits (V,). Raises where the defaults coincide: nothing to compare."""
    V = clean_logits.size(-1)
    if answers is not None:
        clean, corrupted = token_id(answers[0], V), token_id(answers[1], V)
        if clean == corrupted:
            raise LabError(f"{where}the two answers are the same token: give two different ones")
        return clean, corrupted
    clean, corrupted = int(clean_logits.argmax()), int(corrupted_logits.argmax())
    if clean == corrupted:
        text = get_tokenizer().decode([clean])
        raise LabError(f"{where}both prompts predict {text!r} next: type the two answers to compare, one token each")
    return clean, corrupted


def right_aligned(rows: list[torch.Tensor], fill: list[float]) -> torch.Tensor:
    """Stack (L, T_i) per pair into (n, L, max T), each pair's positions aligned at its last token;
    a pair's missing early positions hold its `fill` value."""
    T = max(r.size(-1) for r in rows)
    out = torch.empty(len(rows), rows[0].size(0), T, dtype=torch.float64)
    for i, (r, value) in enumerate(zip(rows, fill, strict=True)):
        out[i] = value
        out[i, :, T - r.size(-1) :] = r
    return out
