"""What a visitor sends, checked: prompts, generation settings, numbers, head names and the lab's
head lists ("L0H0, L1H2", "L1").

Every check raises `UserInputError` with a one-line message the UI shows as it is (and the API
returns as its error), never a traceback.
"""

import re
from dataclasses import dataclass

from ..generate import SamplingError, SamplingSettings
from ..lab.pairs import MAX_PAIRS
from ..tokenizer import Tokenizer, get_tokenizer

MAX_PROMPT_CHARS = 100_000  # refused before tokenizing; a 1024-token prompt is ~4,000 characters
MAX_NEW_TOKENS = 1024
MEAN = "mean"  # the head value that means "mean over the layer's heads"
HEAD_SPEC = re.compile(r"^L(\d+)(?:H(\d+))?$", re.IGNORECASE)  # "L1H2", or "L1" for a whole layer


class UserInputError(ValueError):
    """Something the user sent cannot be used; the message says what, in one line."""


def clean_text(text, what: str = "the prompt") -> str:
    """`text` as a str of valid Unicode (lone surrogates become U+FFFD); refuses huge input."""
    if not isinstance(text, str):
        raise UserInputError(f"{what} must be text")
    if len(text) > MAX_PROMPT_CHARS:
        raise UserInputError(f"{what} has {len(text):,} characters; the limit is {MAX_PROMPT_CHARS:,}")
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


@dataclass(frozen=True)
class Prompt:
    ids: list[int]  # the tokens kept: the last `block_size` of the prompt
    cut: int  # tokens cut from its start to fit the model's context

    @property
    def note(self) -> str:
        if not self.cut:
            return ""
        total = self.cut + len(self.ids)
        return (
            f"The prompt has {total:,} tokens; the model reads at most {len(self.ids):,}, so its first "
            f"{self.cut:,} were cut (✂ marks the cut)."
        )


def encode_prompt(text, block_size: int, tokenizer: Tokenizer | None = None, what: str = "the prompt") -> Prompt:
    """The prompt's token ids, the last `block_size` if it is longer."""
    text = clean_text(text, what)
    if not text.strip():
        raise UserInputError(f"{what} is empty: type some text first")
    ids = (tokenizer or get_tokenizer()).encode(text)
    cut = max(0, len(ids) - block_size)
    return Prompt(ids[cut:], cut)


def as_int(value, name: str):
    """An int from an int or a whole float (sliders and number boxes send floats)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserInputError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise UserInputError(f"{name} must be an integer, got {value!r}")
    return int(value)


def sampling_settings(max_new_tokens, temperature, top_k, top_p, seed) -> SamplingSettings:
    """Generation settings as the form and the API send them, within the app's limits."""
    try:
        settings = SamplingSettings.from_form(max_new_tokens, temperature, top_k, top_p, seed)
    except SamplingError as exc:
        raise UserInputError(str(exc)) from None
    if not 1 <= settings.max_new_tokens <= MAX_NEW_TOKENS:
        raise UserInputError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, got {settings.max_new_tokens}")
    return settings


def check_flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise UserInputError(f"{name} must be true or false, got {value!r}")
    return value


def head_value(layer: int, head: int) -> str:
    """The head dropdown's value for a head."""
    return f"{layer},{head}"


def parse_head_value(value) -> tuple[int, int]:
    try:
        layer, head = (int(part) for part in str(value).split(","))
    except ValueError:
        raise UserInputError(f"not a head: {str(value)[:40]!r}") from None
    return layer, head


def check_head(layer, head, num_layers: int, num_heads: int) -> tuple[int, int | str]:
    """(layer, head) as ints, head possibly MEAN; UserInputError when out of range."""
    layer = as_int(layer, "layer")
    if not 0 <= layer < num_layers:
        raise UserInputError(f"layer must be between 0 and {num_layers - 1}, got {layer}")
    if head == MEAN:
        return layer, MEAN
    head = as_int(head, "head")
    if not 0 <= head < num_heads:
        raise UserInputError(f"head must be between 0 and {num_heads - 1} (or '{MEAN}'), got {head}")
    return layer, head


def parse_heads(text, num_layers: int, num_heads: int) -> tuple[tuple[int, int], ...]:
    """`"L0H0, L1H2"` or `"L1"` (every head of layer 1) → sorted (layer, head) pairs."""
    heads = set()
    for part in str(text).replace(";", ",").split(","):
        typed = part.strip()
        if not typed:
            continue
        match = HEAD_SPEC.match(typed.replace(" ", ""))  # "L1 H2" is L1H2
        if not match:
            raise UserInputError(
                f"not a head or layer: {typed[:20]!r} (write heads like L0H0, L1H2, or L1 for a layer)"
            )
        layer = int(match.group(1))
        if layer >= num_layers:
            raise UserInputError(f"layer {layer} does not exist: the model has layers 0 to {num_layers - 1}")
        if match.group(2) is None:
            heads.update((layer, h) for h in range(num_heads))
            continue
        head = int(match.group(2))
        if head >= num_heads:
            raise UserInputError(f"head {head} does not exist: layers have heads 0 to {num_heads - 1}")
        heads.add((layer, head))
    if not heads:
        raise UserInputError("name at least one head to ablate, e.g. L0H0 or L1")
    return tuple(sorted(heads))


def toggled_head(heads_text, layer: int, head: int) -> str:
    """The typed head list with `L{layer}H{head}` added, or removed if it was there."""
    name = f"L{layer}H{head}"
    parts = [p.strip() for p in str(heads_text or "").split(",") if p.strip()]
    kept = [p for p in parts if p.upper() != name]
    return ", ".join(kept if len(kept) < len(parts) else [*parts, name])


def answer_pair(clean_answer, corrupted_answer) -> tuple[str, str] | None:
    """The two answers as typed (each one token, like " Juliet", with its space), or None for each
    prompt's top prediction; the library checks that each is one token."""
    clean_answer = clean_text(clean_answer or "", "the clean answer")
    corrupted_answer = clean_text(corrupted_answer or "", "the corrupted answer")
    if not clean_answer and not corrupted_answer:
        return None
    if not clean_answer or not corrupted_answer:
        raise UserInputError(
            "type both answers (each one token, like ' Juliet'), or neither for each prompt's top prediction"
        )
    return clean_answer, corrupted_answer


def _field(text: str) -> str:
    """A field of a prompt-set line: its text between double quotes (spaces kept), else stripped."""
    text = text.strip()
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def prompt_set(text, block_size: int, max_pairs: int = MAX_PAIRS):
    """A prompt set typed one pair a line, `clean | corrupted`, optionally `| "answer" | "answer"`:
    (clean prompts, corrupted prompts, answers or None), as token ids; None when the box is empty."""
    text = clean_text(text or "", "the prompt set")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    if len(lines) > max_pairs:
        raise UserInputError(f"a prompt set holds at most {max_pairs} pairs, one a line; this one has {len(lines)}")
    cleans, corrupteds, answers = [], [], []
    for number, line in enumerate(lines, 1):
        fields = [_field(part) for part in line.split("|")]
        if len(fields) not in (2, 4):
            raise UserInputError(
                f'line {number} of the prompt set: write clean | corrupted, or clean | corrupted | " answer" | " answer"'
            )
        cleans.append(encode_prompt(fields[0], block_size, what=f"line {number}'s clean prompt").ids)
        corrupteds.append(encode_prompt(fields[1], block_size, what=f"line {number}'s corrupted prompt").ids)
        answers.append(tuple(fields[2:]) if len(fields) == 4 else None)
    return cleans, corrupteds, (answers if any(answers) else None)


@dataclass(frozen=True)
class Pairs:
    """What the library calls take: one pair (two id lists) or a set (two lists of them), answers."""

    clean: list
    corrupted: list
    answers: object  # None, (clean, corrupted) texts, or one such pair (or None) per pair
    count: int

    @property
    def key(self) -> tuple:
        """What identifies the pairs, to tell whether two views are of the same ones."""
        return repr((self.clean, self.corrupted, self.answers))


def read_pairs(model, clean_text, corrupted_text, answer_clean, answer_corrupted, set_text) -> Pairs:
    """The prompt set when its box has lines, else the two prompts, with the typed answers (a set's
    lines may carry their own)."""
    block = model.config.block_size
    typed_set = prompt_set(set_text, block)
    answers = answer_pair(answer_clean, answer_corrupted)
    if typed_set is not None:
        cleans, corrupteds, per_pair = typed_set
        return Pairs(cleans, corrupteds, per_pair if per_pair is not None else answers, len(cleans))
    clean = encode_prompt(clean_text, block, what="the clean prompt").ids
    corrupted = encode_prompt(corrupted_text, block, what="the corrupted prompt").ids
    return Pairs(clean, corrupted, answers, 1)
