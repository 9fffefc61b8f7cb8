"""What a view hands to the figures: a `Chart` (which drawing, and the plain data it draws), and the
two facts about token text both sides share. Nothing here imports Plotly: views compute numbers,
`gpt2.explorer.figures.draw` turns a chart into a figure, and the API sends the numbers alone."""

from dataclasses import dataclass, field

MAX_AXIS = 256  # tokens on one heatmap axis before pooling
VISIBLE_WHITESPACE = str.maketrans({" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"})


@dataclass(frozen=True)
class Chart:
    """A figure described by data: `kind` names a drawing of `gpt2.explorer.figures` and `args` are
    its keyword arguments (arrays, raw token texts, numbers; the drawing escapes every text)."""

    kind: str
    args: dict = field(default_factory=dict)


def visible_token(text: str) -> str:
    """A token's text with spaces, newlines and tabs drawn as visible symbols, and control characters
    (NUL included) shown as their code, so every token is a readable chip."""
    shown = text.translate(VISIBLE_WHITESPACE)
    return "".join(ch if ch.isprintable() or ch in "␣↵⇥␍" else f"\\x{ord(ch):02x}" for ch in shown) or "∅"
