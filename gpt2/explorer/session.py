"""A visitor's session: the token ids of their text, and which of them the model can see.

The app keeps token ids only; everything shown is recomputed from them (and cached, see
`gpt2.explorer.cache`). A text longer than the model's context is shown as the model sees it: the
last `block_size` tokens, after a ✂ marker that says how many came before. Positions are numbered
within that window everywhere: chips, heatmaps and status lines agree.
"""

from dataclasses import dataclass, replace

from .models import BUNDLED_NAME


@dataclass(frozen=True)
class Window:
    """The tokens the model sees of a session's text."""

    ids: list[int]  # the last block_size tokens
    cut: int  # tokens before them (cut from a long prompt, or slid out by generation)
    prompt_len: int  # how many of `ids` came from the prompt


@dataclass(frozen=True)
class Session:
    model: str = BUNDLED_NAME
    ids: tuple[int, ...] = ()  # the kept prompt, then every generated token
    prompt_len: int = 0  # how many of `ids` came from the prompt
    prompt_cut: int = 0  # prompt tokens cut before ids[0] to fit the model's context

    @property
    def generated(self) -> int:
        return len(self.ids) - self.prompt_len

    def with_ids(self, ids) -> "Session":
        return replace(self, ids=tuple(ids))

    def window(self, block_size: int) -> Window:
        start = max(0, len(self.ids) - block_size)
        return Window(list(self.ids[start:]), self.prompt_cut + start, max(0, self.prompt_len - start))


EMPTY_SESSION = Session()
