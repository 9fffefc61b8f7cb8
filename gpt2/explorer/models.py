"""The models the app serves: the bundled one, local checkpoints named on the command line, and
GPT-2 from the Hugging Face Hub; each loaded once per process and shared by every visitor.

Loading one model never blocks requests for another: each model has its own load lock, and the
store's own lock is held only to look up or insert.
"""

import threading
from collections import OrderedDict
from pathlib import Path

from ..model import GPT2
from ..paths import BUNDLED_MODEL_NAME
from ..precision import default_device, int8_decoding_pays, int8_kernel_available
from ..quantize import quantize_int8
from ..weights import ModelLoadError, canonical_hub_name
from .inputs import UserInputError, check_flag

BUNDLED_NAME = "shakespeare (bundled)"
HUB_CHOICES = ("gpt2", "gpt2-medium", "distilgpt2")


class ModelStore:
    """Keeps the `capacity` most recently used models (and their int8 decoding copies)."""

    def __init__(self, capacity: int = 2):
        self.capacity = capacity
        self._sources: dict[str, str | Path] = {BUNDLED_NAME: BUNDLED_MODEL_NAME}  # name → what to load
        self._models: OrderedDict[str, GPT2] = OrderedDict()
        self._int8: dict[str, GPT2] = {}
        self._load_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

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
        name = self.resolve(name)
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            load_lock = self._load_locks.setdefault(name, threading.Lock())
        with load_lock:  # a second request for the same model waits for the first; others do not
            with self._lock:
                if name in self._models:
                    return self._models[name]
            try:
                model = GPT2.from_pretrained(self._sources.get(name, name), device=default_device())
            except ModelLoadError as exc:
                raise UserInputError(str(exc)) from None
            with self._lock:
                self._models[name] = model
                while len(self._models) > self.capacity:
                    evicted, _ = self._models.popitem(last=False)
                    self._int8.pop(evicted, None)
            return model

    def decoder(self, name, fast: bool = True) -> GPT2:
        """The model to generate with: with `fast`, its int8 copy where that decodes faster
        (`gpt2.precision.int8_decoding_pays`) and this CPU has the kernel, else the float32 model.
        The copy is checked against float32 when it is made (see `gpt2.quantize`)."""
        check_flag(fast, "fast_decode")
        model = self.get(name)
        if not (fast and int8_decoding_pays(model) and int8_kernel_available()):
            return model
        name = self.resolve(name)
        with self._load_locks[name]:
            if name not in self._int8:
                self._int8[name] = quantize_int8(model)
            return self._int8[name]

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._models)


def decoding_note(model: GPT2, fast: bool) -> str:
    """What the status line says about fast decoding, for the model `ModelStore.decoder` returned."""
    check = getattr(model, "decoding", None)  # an int8 copy's DecodingCheck
    if check is not None:
        return f"fast decoding: {check.summary}"
    if fast and int8_decoding_pays(model) and not int8_kernel_available():
        return "fast decoding: not available (no int8 kernel for this CPU in this PyTorch), so float32"
    return ""
