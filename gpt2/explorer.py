"""What the app does, as plain functions: model loading, input checks, streaming generation, the
analysis cache, and the views. `app.py` only wires these to widgets, so all of it is testable
without a browser.

Per session the app keeps token ids only. Attention maps are recomputed from them through the
hooks when a view needs them, with a small process-wide LRU cache bounded in bytes.
"""

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import plots
from .analysis import SCORE_NAMES, capture_maps, head_roles, head_scores
from .generate import SamplingError, check_sampling_args
from .model import GPT2
from .precision import fast_bf16
from .quantize import int8_kernel_available, quantize_int8
from .tokenizer import BUNDLED_MODEL_DIR, Tokenizer, get_tokenizer
from .weights import ModelLoadError, canonical_hub_name, load_pretrained

BUNDLED_NAME = "shakespeare (bundled)"
BUNDLED_DIR = BUNDLED_MODEL_DIR
MODEL_CHOICES = (BUNDLED_NAME, "gpt2", "gpt2-medium", "distilgpt2")
MAX_PROMPT_CHARS = 100_000  # refused before tokenizing; a 1024-token prompt is ~4,000 characters
MAX_NEW_TOKENS = 1024
SCORE_CHOICES = SCORE_NAMES  # the scores the head grid can show
MEAN = "mean"  # the head value that means "mean over the layer's heads"
FAST_DECODE_MIN_WIDTH = 768  # embed_dim from which int8 decoding is faster than float32
# embed_dim from which a bf16 capture pass pays: 256 tokens took 0.17 s against float32's 0.27 s on
# GPT-2 small's shape here, but 19.6 ms against 17.6 ms on the bundled 128-wide model
BF16_ANALYSIS_MIN_WIDTH = 768


class UserInputError(ValueError):
    """Something the user sent cannot be used; the message says what, in one line."""


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class ModelStore:
    """Loads each model once per process and shares it between sessions; keeps the `capacity` most
    recently used."""

    def __init__(self, capacity: int = 2):
        self.capacity = capacity
        self._models: OrderedDict[str, GPT2] = OrderedDict()
        self._int8: dict[str, GPT2] = {}  # int8 decoding copies of loaded models, made on first use
        self._lock = threading.Lock()

    @staticmethod
    def resolve(name) -> str:
        """The canonical name of a model the app may load, or UserInputError."""
        if not isinstance(name, str) or not name.strip():
            raise UserInputError("choose a model")
        name = name.strip()
        if name == BUNDLED_NAME:
            return name
        hub_name = canonical_hub_name(name)
        if hub_name is None:
            raise UserInputError(f"unknown model {name[:80]!r}: choose one of {', '.join(MODEL_CHOICES)}")
        return hub_name

    def get(self, name) -> GPT2:
        name = self.resolve(name)
        with self._lock:  # one load at a time; a second request for the same model waits for the first
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            try:
                model = load_pretrained(BUNDLED_DIR if name == BUNDLED_NAME else name, device=device())
            except ModelLoadError as exc:
                raise UserInputError(str(exc)) from None
            self._models[name] = model
            while len(self._models) > self.capacity:
                evicted, _ = self._models.popitem(last=False)
                self._int8.pop(evicted, None)
            return model

    def decoder(self, name, fast: bool = True) -> GPT2:
        """The model to generate with: with `fast`, its int8 copy where that decodes faster
        (GPT-2-wide models on a CPU; see `gpt2.quantize`), else the float32 model itself."""
        if not isinstance(fast, bool):
            raise UserInputError(f"fast_decode must be true or false, got {fast!r}")
        model = self.get(name)
        if not (fast and uses_int8_decoding(model)):
            return model
        name = self.resolve(name)
        with self._lock:
            if name not in self._int8:
                self._int8[name] = quantize_int8(model)
            return self._int8[name]

    def loaded(self) -> list[str]:
        return list(self._models)


def uses_int8_decoding(model: GPT2) -> bool:
    """Int8 weights pay off once the matrices outgrow the CPU's caches: from GPT-2 small's width on
    (3× float32's speed here). The bundled 128-wide model decodes no faster with them, so it keeps
    float32's exact tokens."""
    on_cpu = model.wte.weight.device.type == "cpu"
    return on_cpu and model.config.embed_dim >= FAST_DECODE_MIN_WIDTH and int8_kernel_available()


def clean_text(text) -> str:
    """The prompt as a str of valid Unicode (lone surrogates become U+FFFD); refuses huge input."""
    if not isinstance(text, str):
        raise UserInputError("the prompt must be text")
    if len(text) > MAX_PROMPT_CHARS:
        raise UserInputError(f"the prompt has {len(text):,} characters; the limit is {MAX_PROMPT_CHARS:,}")
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def encode_prompt(text, block_size: int, tokenizer: Tokenizer | None = None) -> tuple[list[int], str]:
    """Token ids of the prompt (the last `block_size` if longer) and a note saying what was cut."""
    text = clean_text(text)
    if not text.strip():
        raise UserInputError("the prompt is empty: type some text first")
    ids = (tokenizer or get_tokenizer()).encode(text)
    if len(ids) > block_size:
        return ids[
            -block_size:
        ], f"The prompt has {len(ids):,} tokens; kept the last {block_size:,} (the model's context)."
    return ids, ""


def _as_int(value, name: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool):
        raise UserInputError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int):
        raise UserInputError(f"{name} must be an integer, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    max_new_tokens: int
    temperature: float
    top_k: int | None
    top_p: float | None
    seed: int | None


def check_settings(max_new_tokens, temperature, top_k, top_p, seed, vocab_size: int = 50257) -> Settings:
    """Validate generation settings as sent by the UI or the API (sliders send floats)."""
    max_new_tokens = _as_int(max_new_tokens, "max_new_tokens")
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise UserInputError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, got {max_new_tokens}")
    top_k = _as_int(top_k, "top_k", allow_none=True) or None
    seed = _as_int(seed, "seed", allow_none=True)
    if seed is not None and not 0 <= seed < 2**63:
        raise UserInputError(f"seed must be between 0 and 2**63 - 1, got {seed}")
    if top_p is not None and not isinstance(top_p, bool) and isinstance(top_p, (int, float)) and top_p == 1:
        top_p = None
    try:
        check_sampling_args(max_new_tokens, temperature, top_k, top_p, vocab_size)
    except SamplingError as exc:
        raise UserInputError(str(exc)) from None
    return Settings(max_new_tokens, float(temperature), top_k, top_p, seed)


def stream_generation(
    model: GPT2, prompt_ids: list[int], settings: Settings, tokenizer: Tokenizer | None = None
) -> Iterator[tuple[str, list[int]]]:
    """Yield (continuation text so far, all token ids so far) after each new token. The text never
    ends in half a character."""
    tokenizer = tokenizer or get_tokenizer()
    decoder = tokenizer.incremental_decoder()
    ids = list(prompt_ids)
    text = ""
    for token in model.stream(
        prompt_ids,
        settings.max_new_tokens,
        temperature=settings.temperature,
        top_k=settings.top_k,
        top_p=settings.top_p,
        seed=settings.seed,
    ):
        ids.append(token)
        text += decoder.push(token)
        yield text, list(ids)
    tail = decoder.flush()
    if tail:
        yield text + tail, ids


@dataclass
class Analysis:
    """Everything the views show for one token sequence under one model."""

    ids: list[int]
    tokens: list[str]
    maps: np.ndarray  # (L, H, T, T) float32 attention probabilities
    hidden: torch.Tensor  # (T, C) final-LayerNorm output, for next-token probabilities
    scores: dict[str, np.ndarray]  # score name → (L, H)
    roles: list[list[str]]

    @property
    def nbytes(self) -> int:
        return self.maps.nbytes + self.hidden.numel() * self.hidden.element_size()


def analyze(model: GPT2, ids: list[int], tokenizer: Tokenizer | None = None, bf16: bool | None = None) -> Analysis:
    """One capture pass (see `capture_maps`) and what the views need: tokens, head scores and roles.
    By default bf16 only for GPT-2-wide models on hardware with bf16 units: a narrower model's pass
    is no faster in it, and the bundled model's sharp heads move by up to 0.017 in it."""
    tokenizer = tokenizer or get_tokenizer()
    if bf16 is None:
        bf16 = model.config.embed_dim >= BF16_ANALYSIS_MIN_WIDTH and fast_bf16(model.wte.weight.device)
    attn, hidden = capture_maps(model, ids, bf16)
    scores = {name: s.cpu().numpy() for name, s in head_scores(attn, torch.tensor(ids)).items()}
    return Analysis(
        ids=list(ids),
        tokens=[tokenizer.token_text(i) for i in ids],
        maps=attn.cpu().numpy(),
        hidden=hidden.cpu(),
        scores=scores,
        roles=head_roles(scores),
    )


class AnalysisCache:
    """LRU of analyses keyed by (model, token ids), bounded by the bytes of their maps."""

    def __init__(self, budget_bytes: int = 1 << 30):
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[tuple, Analysis] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_name: str, model: GPT2, ids: list[int]) -> Analysis:
        key = (model_name, tuple(ids))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        analysis = analyze(model, ids)
        with self._lock:
            self._items[key] = analysis
            while len(self._items) > 1 and self.nbytes > self.budget_bytes:
                self._items.popitem(last=False)
        return analysis

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._items.values())

    def __len__(self) -> int:
        return len(self._items)


def check_head(analysis: Analysis, layer, head) -> tuple[int, int | str]:
    """(layer, head) as ints, head possibly MEAN; UserInputError when out of range."""
    num_layers, num_heads = analysis.maps.shape[:2]
    layer = _as_int(layer, "layer")
    if not 0 <= layer < num_layers:
        raise UserInputError(f"layer must be between 0 and {num_layers - 1}, got {layer}")
    if head == MEAN:
        return layer, MEAN
    head = _as_int(head, "head")
    if not 0 <= head < num_heads:
        raise UserInputError(f"head must be between 0 and {num_heads - 1} (or '{MEAN}'), got {head}")
    return layer, head


def head_map(analysis: Analysis, layer: int, head: int | str, hide_sink: bool = False) -> np.ndarray:
    """(T, T) map of one head, or the layer's mean over heads; optionally without the first-token sink."""
    attn = analysis.maps[layer].mean(0) if head == MEAN else analysis.maps[layer, head]
    return plots.drop_first_token(attn) if hide_sink else attn


def head_title(analysis: Analysis, layer: int, head: int | str, hide_sink: bool) -> str:
    name = (
        f"layer {layer}, mean of {analysis.maps.shape[1]} heads"
        if head == MEAN
        else f"layer {layer}, head {head} ({analysis.roles[layer][head]})"
    )
    return name + (" · first-token sink hidden, rows renormalized" if hide_sink else "")


def heatmap_view(analysis: Analysis, layer, head, hide_sink=False, log_scale=False):
    """The big heatmap and its note."""
    layer, head = check_head(analysis, layer, head)
    attn = head_map(analysis, layer, head, hide_sink)
    return plots.attention_heatmap(attn, analysis.tokens, head_title(analysis, layer, head, hide_sink), log_scale)


def grid_view(analysis: Analysis, score_name: str, selected: tuple[int, int] | None):
    """The thumbnail grid and the head-score heatmap, the selected head outlined in both."""
    if score_name not in analysis.scores:
        raise UserInputError(f"unknown score {score_name!r}: choose one of {', '.join(SCORE_CHOICES)}")
    return plots.head_grid(analysis.maps, analysis.roles, selected), plots.score_heatmap(
        analysis.scores[score_name], score_name, analysis.roles, selected
    )


def head_choices(analysis: Analysis) -> list[tuple[str, str]]:
    """Dropdown entries: every head with its role and scores, as (label, 'layer,head')."""
    num_layers, num_heads = analysis.maps.shape[:2]
    choices = []
    for layer in range(num_layers):
        for head in range(num_heads):
            s = {name: analysis.scores[name][layer, head] for name in SCORE_CHOICES}
            label = (
                f"L{layer} H{head} · {analysis.roles[layer][head]} "
                f"(prev {s['previous-token']:.2f}, ind {s['induction']:.2f}, sink {s['first-token sink']:.2f})"
            )
            choices.append((label, f"{layer},{head}"))
    return choices


def parse_head_choice(value) -> tuple[int, int]:
    try:
        layer, head = (int(part) for part in str(value).split(","))
    except ValueError:
        raise UserInputError(f"not a head: {value!r}") from None
    return layer, head


def token_chips(ids: list[int], prompt_len: int, tokenizer: Tokenizer | None = None) -> list[tuple[str, str]]:
    """(visible token text, 'prompt' | 'generated') for gr.HighlightedText."""
    tokenizer = tokenizer or get_tokenizer()
    return [
        (plots.visible_token(tokenizer.token_text(i)), "prompt" if n < prompt_len else "generated")
        for n, i in enumerate(ids)
    ]


def attention_chips(
    analysis: Analysis, layer, head, query: int, hide_sink: bool = False
) -> list[tuple[str, float | None]]:
    """Tokens coloured by how much `query` attends to each (scaled so the strongest key is 1), as in
    bertviz's head view; the query, bracketed, scores its attention to itself; later tokens carry none."""
    layer, head = check_head(analysis, layer, head)
    query = min(max(0, _as_int(query, "query")), len(analysis.ids) - 1)
    row = head_map(analysis, layer, head, hide_sink)[query, : query + 1]
    scale = max(float(row.max()), 1e-9)
    chips = []
    for n, tok in enumerate(analysis.tokens):
        text = plots.visible_token(tok)
        if n <= query:
            chips.append((f"[{text}]" if n == query else text, round(float(row[n]) / scale, 3)))
        else:
            chips.append((text, None))
    return chips


def next_token_view(model: GPT2, analysis: Analysis, position: int, k: int = 10, tokenizer: Tokenizer | None = None):
    """Bar chart of the top-k next-token probabilities after `position`."""
    tokenizer = tokenizer or get_tokenizer()
    position = min(max(0, _as_int(position, "position")), len(analysis.ids) - 1)
    with torch.inference_mode():
        weight = model.lm_head.weight
        logits = analysis.hidden[position].to(weight.device, weight.dtype) @ weight.t()
        probs = torch.softmax(logits.float(), dim=-1)
        top_probs, top_ids = probs.topk(k)
    words = [tokenizer.token_text(i) for i in top_ids.tolist()]
    title = f"next token after '{plots.visible_token(analysis.tokens[position])}' ({position})"
    return plots.next_token_bars(words, top_probs.cpu().numpy(), title)


def save_npz(analysis: Analysis, path: Path, model_name: str) -> Path:
    """All layers' and heads' attention with the tokens, as a compressed .npz."""
    np.savez_compressed(
        path,
        attention=analysis.maps,  # (L, H, T, T)
        token_ids=np.asarray(analysis.ids, dtype=np.int64),
        tokens=np.asarray(analysis.tokens, dtype=str),
        model=np.asarray(model_name),
        **{"score_" + name.replace(" ", "_").replace("-", "_"): value for name, value in analysis.scores.items()},
    )
    return path


def save_html(fig, path: Path) -> Path:
    """A figure as a standalone HTML page (plotly.js inlined, so it opens offline)."""
    fig.write_html(path, include_plotlyjs=True, full_html=True)
    return path


def attention_json(analysis: Analysis, layer, head) -> dict:
    """{"tokens": [...], "attention": [[...]]} for one head (rows are queries)."""
    layer, head = check_head(analysis, layer, head)
    attn = head_map(analysis, layer, head)
    return {"tokens": analysis.tokens, "attention": np.round(attn.astype(np.float64), 6).tolist()}
