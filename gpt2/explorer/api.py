"""The app's named API endpoints (`/generate`, `/attention`, the lab's five): each checks its input,
computes the same numbers the page shows (no figure is drawn), and answers a user error with one
line (see `errors.user_errors`)."""

from collections.abc import Iterator

from ..lab import Ablation
from ..tokenizer import get_tokenizer
from . import lab_views, service, views
from .errors import user_errors
from .inputs import encode_prompt, parse_heads
from .models import BUNDLED_NAME
from .widgets import on_gpu


def _api_entry(prompt: str, model: str):
    loaded = service.models().get(model)
    ids = encode_prompt(prompt, loaded.config.block_size).ids
    return loaded, service.analyses().get(service.models().resolve(model), loaded, ids)


@user_errors()
@on_gpu
def api_generate(
    prompt: str,
    model: str = BUNDLED_NAME,
    max_new_tokens: int = 40,
    temperature: float = 0.8,
    top_k: int = 50,
    top_p: float = 1.0,
    seed: int = 0,
    fast_decode: bool = True,
) -> Iterator[str]:
    """Generate a continuation: streams the prompt followed by the text so far; the last value is the
    whole result. `fast_decode` uses int8 weights for GPT-2-sized models (the text may differ slightly
    from float32's). A client that disconnects (or cancels) stops the generation and frees its worker."""
    settings, loaded, encoded = service.prepare(
        prompt, model, max_new_tokens, temperature, top_k, top_p, seed, fast_decode
    )
    tokenizer = get_tokenizer()
    kept = tokenizer.decode(encoded.ids)
    yield kept  # at once: a streaming client sees its request start
    for ids in service.throttled(service.stream_text(loaded, encoded.ids, settings)):
        yield kept + tokenizer.decode(ids[len(encoded.ids) :])


@user_errors()
@on_gpu
def api_attention(prompt: str, model: str = BUNDLED_NAME, layer: int = 0, head: int = 0) -> dict:
    """One head's attention over the prompt: {"tokens": [...], "attention": [[...]]}, rows are queries."""
    loaded, entry = _api_entry(prompt, model)
    return views.attention_json(loaded, entry, layer, head)


@user_errors()
@on_gpu
def api_loss(prompt: str, model: str = BUNDLED_NAME) -> dict:
    """Per-token loss: {"tokens": [...], "loss": [...]}; loss[i] is the loss of token i + 1 given tokens 0..i."""
    loaded, entry = _api_entry(prompt, model)
    data = lab_views.loss_view(loaded, entry).data
    return {"tokens": data["tokens"], "loss": data["loss"]}


@user_errors()
@on_gpu
def api_logit_lens(prompt: str, model: str = BUNDLED_NAME) -> dict:
    """The logit lens: {"tokens", "layers": ["embed", "L0", ...], "top_token": [[...]], "top_prob": [[...]]}, rows = layers."""
    loaded, entry = _api_entry(prompt, model)
    return lab_views.lens_view(loaded, entry).data


@user_errors()
@on_gpu
def api_head_effects(prompt: str, model: str = BUNDLED_NAME, position: int = -1, target: str = "") -> dict:
    """{"position", "target", "direct": (L, H), "ablation": (L, H)}: each head's direct contribution to
    the target's logit, and the change in its log-probability when that head alone is mean-ablated."""
    loaded, entry = _api_entry(prompt, model)
    position, target_id = lab_views.with_default_target(loaded, entry, position, target)
    direct, _ = lab_views.attribution_view(loaded, entry, position, target_id)
    sweep = lab_views.sweep_view(loaded, entry, position, target_id)
    return {
        "position": position,
        "target": direct.data["target"],
        "direct": direct.data["direct"],
        "ablation": sweep.data["ablation"],
    }


@user_errors()
@on_gpu
def api_ablate(prompt: str, model: str = BUNDLED_NAME, heads: str = "L0H0", mode: str = "zero") -> dict:
    """{"tokens", "loss_before", "loss_after", "top_before", "top_after"}: per-token losses as in /loss
    and the top 10 [token, probability] at the last position, before and after ablating `heads`
    ("L0H0, L1H2", or "L1" for every head of layer 1) in `mode` ("zero" or "mean")."""
    loaded, entry = _api_entry(prompt, model)
    config = loaded.config
    ablation = Ablation(parse_heads(heads, config.num_layers, config.num_heads), mode)
    ablated = service.analyses().get(service.models().resolve(model), loaded, entry.analysis.ids, ablation)
    position, target_id = lab_views.with_default_target(loaded, entry, -1, "")
    loss_view, _, _ = lab_views.ablation_views(loaded, entry, ablated, ablation, position, target_id)
    return {key: loss_view.data[key] for key in ("tokens", "loss_before", "loss_after", "top_before", "top_after")}


@user_errors()
@on_gpu
def api_patch(clean: str, corrupted: str, model: str = BUNDLED_NAME) -> dict:
    """{"answer_clean", "answer_corrupted", "resid": (L, T), "heads": (L, H)}: the logit difference
    restored by patching clean activations into the corrupted run, 0 (none) … 1 (the clean run's)."""
    loaded = service.models().get(model)
    clean_ids = encode_prompt(clean, loaded.config.block_size, what="the clean prompt").ids
    corrupted_ids = encode_prompt(corrupted, loaded.config.block_size, what="the corrupted prompt").ids
    resid_view, _, _ = lab_views.patch_views(loaded, clean_ids, corrupted_ids)
    return {key: resid_view.data[key] for key in ("answer_clean", "answer_corrupted", "resid", "heads")}
