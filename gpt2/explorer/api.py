"""The app's named API endpoints (`/generate`, `/attention`, the lab's five, heads explained's four,
circuits' three, `/history`):
each checks its input,
computes the same numbers the page shows (no figure is drawn), and answers a user error with one
line (see `errors.user_errors`)."""

from collections.abc import Iterator

from ..heads import composition_scores, model_roles
from ..lab import Ablation
from ..tokenizer import get_tokenizer
from . import circuit_views, heads_views, lab_views, service, views
from .errors import user_errors
from .heads_tab import card_token_ids
from .inputs import MEAN, UserInputError, as_int, check_head, encode_prompt, parse_heads, read_pairs
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


def _api_pairs(clean: str, corrupted: str, model: str, answer_clean: str, answer_corrupted: str):
    loaded = service.models().get(model)
    return loaded, read_pairs(loaded, clean, corrupted, answer_clean, answer_corrupted, "")


@user_errors()
@on_gpu
def api_patch(
    clean: str, corrupted: str, model: str = BUNDLED_NAME, answer_clean: str = "", answer_corrupted: str = ""
) -> dict:
    """{"answer_clean", "answer_corrupted", "resid": (L, T), "heads": (L, H)}: the logit difference
    restored by patching clean activations into the corrupted run, 0 (none) … 1 (the clean run's).
    The answers are one token each (" Juliet"); empty, each prompt's top next token."""
    loaded, pairs = _api_pairs(clean, corrupted, model, answer_clean, answer_corrupted)
    resid_view, _, _ = lab_views.patch_views(loaded, pairs)
    return {key: resid_view.data[key] for key in ("answer_clean", "answer_corrupted", "resid", "heads")}


@user_errors()
@on_gpu
def api_attribute(
    clean: str,
    corrupted: str,
    model: str = BUNDLED_NAME,
    answer_clean: str = "",
    answer_corrupted: str = "",
    steps: int = 5,
) -> dict:
    """Attribution patching, patching estimated from gradients in one pass: {"answer_clean",
    "answer_corrupted", "resid": (L, T), "heads": (L, H), "mlp": (L,)}, normalised as /patch;
    `steps` 0 is one gradient, more integrate it from the corrupted input to the clean one."""
    loaded, pairs = _api_pairs(clean, corrupted, model, answer_clean, answer_corrupted)
    heads, _, _ = circuit_views.attribution_views(loaded, pairs, as_int(steps, "steps"))
    return {key: heads.data[key] for key in ("answer_clean", "answer_corrupted", "resid", "heads", "mlp")}


@user_errors()
@on_gpu
def api_circuit(
    clean: str,
    corrupted: str,
    model: str = BUNDLED_NAME,
    answer_clean: str = "",
    answer_corrupted: str = "",
    edges: int = 30,
    method: str = "eap-ig",
) -> dict:
    """The circuit of the clean prompt's prediction against the corrupted one: {"nodes", "edges":
    [{"from", "to", "input" (q, k, v, mlp or logits), "score"}, ...], "faithfulness", "curve":
    [[edges kept, faithfulness], ...]}; `method` "eap-ig" (5 integrated-gradient steps) or "eap"."""
    loaded, pairs = _api_pairs(clean, corrupted, model, answer_clean, answer_corrupted)
    graph, _, _ = circuit_views.circuit_views(loaded, pairs, as_int(edges, "edges"), str(method).lower())
    data = graph.data
    edge_rows = [{"from": e["src"], "to": e["dst"], "input": e["input"], "score": e["score"]} for e in data["edges"]]
    return {
        **{k: data[k] for k in ("answer_clean", "answer_corrupted", "nodes", "faithfulness", "curve")},
        "edges": edge_rows,
    }


@user_errors()
@on_gpu
def api_task(model: str = BUNDLED_NAME, name: str = "induction", seed: int = 2) -> dict:
    """A task's pair for /patch, /attribute and /circuit: {"clean", "corrupted", "answer_clean",
    "answer_corrupted"}; `name` "induction" (every model) or "names" (GPT-2-sized models)."""
    return circuit_views.task_texts(service.models().get(model), str(name), as_int(seed, "seed"))


@user_errors()
@on_gpu
def api_qk_attribution(
    prompt: str, model: str = BUNDLED_NAME, layer: int = 0, head: int = 0, query: int = -1, key: int = 0
) -> dict:
    """Why `query` attends to `key` in head (layer, head) of the prompt: {"score", "mean_score", "labels"
    (the parts: tok, pos, L{l}H{h}, b_O{l}, MLP{l}, bias), "query" and "key" (each part's share,
    summed over the other side), "key_contrast" (the key side's share minus its mean over the keys the
    query sees), "matrix" (query part × key part)}; query -1 is the last position (docs/lab.md)."""
    loaded, entry = _api_entry(prompt, model)
    T = len(entry.analysis.ids)
    query = as_int(query, "query")
    query = query + T if query < 0 else query
    layer, head = check_head(layer, head, loaded.config.num_layers, loaded.config.num_heads)
    if head == MEAN:
        raise UserInputError("QK attribution is of one head: give a head number")
    outputs = service.analyses().head_outputs(service.models().resolve(model), loaded, entry)
    return heads_views.qk_view(loaded, entry, outputs, layer, head, query, as_int(key, "key")).data


@user_errors()
@on_gpu
def api_composition(model: str = BUNDLED_NAME, mode: str = "k") -> dict:
    """{"mode", "scores": (L, H, L, H)}: how much each sender head's output can reach each later head's
    queries ("q"), keys ("k") or values ("v"), from the weights (docs/lab.md)."""
    scores = composition_scores(service.models().get(model), mode)
    return {"mode": str(mode).lower(), "scores": scores.tolist()}


@user_errors()
@on_gpu
def api_head_roles(model: str = BUNDLED_NAME) -> dict:
    """{"labels": (L, H), "scores": {role score name: (L, H)}}: every head's role from the model's own
    behaviour on random repeated sequences, a fixed text and its weights, not from any prompt."""
    return model_roles(service.models().get(model)).to_dict()


@user_errors()
@on_gpu
def api_head_card(model: str = BUNDLED_NAME, layer: int = 0, head: int = 0, tokens: str = "") -> dict:
    """A head's passport: {"role", "scores" (its role scores, "copying" among them), "partners" (its
    strongest composition partners), "ov" and "qk" (token tables for `tokens`, by default a few common
    words)}."""
    loaded = service.models().get(model)
    layer, head = check_head(layer, head, loaded.config.num_layers, loaded.config.num_heads)
    if head == MEAN:
        raise UserInputError("a head card is of one head: give a head number")
    view, _ = heads_views.head_card(loaded, layer, head, card_token_ids(tokens, None))
    return {**view.data, "copying": view.data["scores"]["copying"]}


@user_errors()
def api_history(model: str = BUNDLED_NAME) -> dict:
    """The model's training history: {"rows": [...]}, one row per evaluation, as `gpt2.train` wrote
    them to history.jsonl (fields in docs/training.md)."""
    return {"rows": service.models().history(model)}
