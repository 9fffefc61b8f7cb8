"""The models the app serves: the bundled one, local checkpoints named on the command line, and
GPT-2 from the Hugging Face Hub; each loaded once per process and shared by every visitor.

Loading one model never blocks requests for another, and two requests for one model load it once
(see `KeyedCache`). A model's int8 decoding copy lives with it, so evicting the model frees both.
"""

import threading
from dataclasses import dataclass, field
from pathlib import Path

from .. import history
from ..model import GPT2
from ..paths import BUNDLED_MODEL_DIR, BUNDLED_MODEL_NAME
from ..precision import default_device, int8_decoding_pays, int8_kernel_available
from ..quantize import quantize_int8
from ..weights import ModelLoadError, canonical_hub_name
from .cache import KeyedCache
from .inputs import UserInputError, check_flag

BUNDLED_NAME = "shakespeare (bundled)"
HUB_CHOICES = ("gpt2", "gpt2-medium", "distilgpt2")


@dataclass
class LoadedModel:
    """A model the store holds and, once `ModelStore.decoder` asks for it, its int8 decoding copy."""

    model: GPT2
    int8: GPT2 | None = None
    int8_lock: threading.Lock = field(default_factory=threading.Lock)  # the copy is made once


class ModelStore:
    """Keeps the `capacity` most recently used models (and their int8 decoding copies)."""

    def __init__(self, capacity: int = 2):
        self._sources: dict[str, str | Path] = {BUNDLED_NAME: BUNDLED_MODEL_NAME}  # name → what to load
        self._loaded = KeyedCache(bound=capacity)  # name → LoadedModel, one unit of capacity each
        self._snapshots = KeyedCache(bound=2)  # (name, step) → GPT2: a training run's past weights

    @property
    def capacity(self) -> int:
        return self._loaded.bound

    def add_local(self, directory) -> str:
        """Serve a checkpoint directory in Hugging Face's layout under its directory's name; loads it
        now, so that a bad directory fails at start-up with a one-line ModelLoadError."""
        path = Path(directory).expanduser().resolve()
        name = path.name
        if name in self._sources or canonical_hub_name(name) is not None:
            name = f"{path.name} ({path})"
        self._sources[name] = path
        try:
            self.get(name)
        except UserInputError as exc:
            del self._sources[name]
            raise ModelLoadError(str(exc)) from None
        return name

    def choices(self) -> list[str]:
        """The model list: the bundled model, the local checkpoints, then the Hub's."""
        return [*self._sources, *HUB_CHOICES]

    def resolve(self, name) -> str:
        """The canonical name of a model the app may load, or UserInputError."""
        if not isinstance(name, str) or not name.strip():
            raise UserInputError("choose a model")
        name = name.strip()
        if name in self._sources:
            return name
        hub_name = canonical_hub_name(name)
        if hub_name is None:
            raise UserInputError(f"unknown model {name[:80]!r}: choose one of {', '.join(self.choices())}")
        return hub_name

    def get(self, name) -> GPT2:
        return self._get_loaded(name).model

    def decoder(self, name, fast: bool = True) -> GPT2:
        """The model to generate with: with `fast`, its int8 copy where that decodes faster
        (`gpt2.precision.int8_decoding_pays`) and this CPU has the kernel, else the float32 model.
        The copy is checked against float32 when it is made (see `gpt2.quantize`)."""
        check_flag(fast, "fast_decode")
        loaded = self._get_loaded(name)
        if not (fast and int8_decoding_pays(loaded.model) and int8_kernel_available()):
            return loaded.model
        with loaded.int8_lock:
            if loaded.int8 is None:
                loaded.int8 = quantize_int8(loaded.model)
            return loaded.int8

    def loaded(self) -> list[str]:
        """The names of the models in memory, least recently used first."""
        return self._loaded.keys()

    def directory(self, name) -> Path | None:
        """The local directory a model was loaded from (its training history lives there); None for
        the Hub's models."""
        source = self._sources.get(self.resolve(name))
        if source == BUNDLED_MODEL_NAME:
            return BUNDLED_MODEL_DIR
        return None if source is None else Path(source)

    def history(self, name) -> list[dict]:
        """The rows of the model's training history (`gpt2.history`), or UserInputError saying it has none."""
        directory = self.directory(name)
        if directory is None:
            raise UserInputError(f"{self.resolve(name)} has no training history: it comes from the Hugging Face Hub")
        try:
            rows = history.read_history(directory)
        except history.HistoryError as exc:
            raise UserInputError(str(exc)) from None
        if not rows:
            raise UserInputError(f"{self.resolve(name)}'s training history is empty")
        return rows

    def probe_sequence(self, name) -> list[int] | None:
        """The first sequence its run's head scores were measured on (`gpt2.history`), if any."""
        directory = self.directory(name)
        return None if directory is None else history.probe_sequence(directory)

    def snapshot_steps(self, name) -> list[int]:
        directory = self.directory(name)
        return [] if directory is None else list(history.snapshot_steps(directory))

    def snapshot(self, name, step: int) -> GPT2:
        """The model's weights at training step `step` (a snapshot of its run), loaded once."""
        name = self.resolve(name)
        directory = self.directory(name)
        found = {} if directory is None else history.snapshot_steps(directory)
        if step not in found:
            raise UserInputError(f"{name} has no snapshot at step {step}")
        return self._snapshots.get((name, step), lambda: self._load(name, found[step]))

    def _get_loaded(self, name) -> LoadedModel:
        name = self.resolve(name)
        return self._loaded.get(name, lambda: LoadedModel(self._load(name)))

    def _load(self, name: str, source=None) -> GPT2:
        try:
            return GPT2.from_pretrained(source or self._sources.get(name, name), device=default_device())
        except ModelLoadError as exc:
            raise UserInputError(str(exc)) from None


def decoding_note(model: GPT2, fast: bool) -> str:
    """What the status line says about fast decoding, for the model `ModelStore.decoder` returned."""
    check = getattr(model, "decoding", None)  # an int8 copy's DecodingCheck
    if check is not None:
        return f"fast decoding: {check.summary}"
    if fast and int8_decoding_pays(model) and not int8_kernel_available():
        return "fast decoding: not available (no int8 kernel for this CPU in this PyTorch), so float32"
    return ""
