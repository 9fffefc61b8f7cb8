"""Head scores on hand-built maps, roles that tell patterns apart, and the residual-stream analysis:
maps recomputed from the cache equal a capture pass, scores equal the full maps', memory is bounded."""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gpt2 import GPT2, get_tokenizer, run_with_cache
from gpt2.analysis import THUMB_AXIS, analyze, final_hidden, layer_maps
from gpt2.data import random_repeated_tokens
from gpt2.probes import induction_probe
from gpt2.scores import MapSummary, drop_first_token, head_roles, head_scores, induction_targets, pool_map


def previous_token_map(T):
    attn = torch.zeros(T, T)
    attn[0, 0] = 1
    for t in range(1, T):
        attn[t, t - 1] = 1
    return attn


def uniform_map(T):
    return torch.ones(T, T).tril() / torch.arange(1, T + 1)[:, None]


def sink_map(T):
    attn = torch.zeros(T, T)
    attn[:, 0] = 1
    return attn


def induction_map(ids):
    """Each repeated token attends to what followed its previous occurrence, the rest to key 0."""
    T = len(ids)
    attn = sink_map(T)
    for t in range(T):
        earlier = [j for j in range(t - 1) if ids[j] == ids[t]]
        if earlier:
            attn[t] = 0
            attn[t, earlier[-1] + 1] = 1
    return attn


def test_scores_on_hand_built_maps():
    T = 8
    assert head_scores(previous_token_map(T), range(T))["previous-token"].item() == 1.0
    sink = head_scores(sink_map(T), range(T))
    assert sink["first-token sink"].item() == 1.0 and sink["entropy"].item() == 0.0
    assert sink["previous-token"].item() == pytest.approx(1 / 7)  # query 1's previous token is key 0
    uniform = head_scores(uniform_map(T), range(T))
    assert uniform["entropy"].item() == pytest.approx(sum(math.log(t + 1) for t in range(1, T)) / (T - 1), rel=1e-5)
    assert uniform["first-token sink"].item() == pytest.approx(sum(1 / (t + 1) for t in range(1, T)) / (T - 1))
    assert uniform["induction"].item() == 0.0  # nothing repeats


def test_induction_on_a_perfect_induction_head_with_a_sink():
    n = 6
    ids = torch.tensor([10, 11, 12, 13, 14, 15] * 2)
    targets = induction_targets(ids)
    for t in range(n, 2 * n):
        assert targets[t].nonzero().flatten().tolist() == [t - n + 1]
    assert not targets[:n].any()
    attn = sink_map(2 * n)
    for t in range(n, 2 * n):
        attn[t] = 0
        attn[t, 0] = 0.7  # the sink takes most of the row ...
        attn[t, t - n + 1] = 0.3  # ... the rest goes to the induction target
    assert head_scores(attn, ids)["induction"].item() == pytest.approx(1.0)
    assert head_scores(previous_token_map(2 * n), ids)["induction"].item() == 0.0


def test_a_head_parked_on_the_sink_scores_a_fraction():
    # rows with all but ~1e-8 on key 0: taking the rest as 1 - sink cancels to noise (it once scored 2.6)
    n = 6
    ids = torch.tensor([10, 11, 12, 13, 14, 15] * 2)
    attn = sink_map(2 * n)
    for t in range(n, 2 * n):
        attn[t, t - n + 1] = 1e-8
        attn[t, 1 if t - n + 1 != 1 else 2] = 3e-8
    assert head_scores(attn, ids)["induction"].item() == pytest.approx(0.25, rel=1e-4)


def test_on_period_two_text_a_previous_token_head_is_labelled_previous_token():
    """'a b a b ...': the induction target of query t includes t - 1, the previous token. Those keys
    are not induction evidence, so the previous-token head is not called an induction head, and a
    true induction head (attending to the older occurrences' successors) still is."""
    ids = torch.tensor([5, 6] * 10)
    prev = previous_token_map(20)
    older = torch.zeros(20, 20)
    older[:3, 0] = 1
    for t in range(3, 20):
        older[t, t - 3] = 1  # the successor of the occurrence before last
    scores = head_scores(torch.stack([prev, older])[None], ids)
    assert scores["previous-token"][0, 0] > 0.9 and scores["induction"][0, 0] == 0.0
    assert scores["induction"][0, 1] > 0.9
    assert head_roles(scores) == [["previous-token", "induction"]]


def test_roles_follow_the_scores():
    ids = torch.tensor([5, 6, 7, 8] * 2)
    attn = torch.stack([previous_token_map(8), sink_map(8), uniform_map(8), induction_map(ids.tolist())])[None]
    assert head_roles(head_scores(attn, ids)) == [["previous-token", "first-token sink", "mixed", "induction"]]


def test_blockwise_summary_equals_the_whole_maps():
    torch.manual_seed(0)
    ids = torch.randint(0, 20, (70,))
    logits = torch.randn(3, 70, 70).masked_fill(torch.ones(70, 70, dtype=torch.bool).triu(1), float("-inf"))
    maps = logits.softmax(-1)
    whole = head_scores(maps, ids)
    summary = MapSummary(ids, (3,), thumb_axis=16)
    for start in range(0, 70, 32):  # blocks of queries, each over the keys it can see
        rows = slice(start, min(start + 32, 70))
        summary.add(maps[:, rows, : rows.stop], rows)
    for name, value in summary.scores().items():
        assert torch.allclose(value, whole[name], atol=1e-6), name
    assert torch.allclose(summary.thumbnails(), pool_map(maps, 16), atol=1e-6, equal_nan=True)


def test_pooled_maps_keep_rows_summing_to_one_and_mask_the_future():
    maps = uniform_map(70)
    pooled = pool_map(maps, 16)  # bins of 5
    assert pooled.shape == (14, 14)
    assert torch.allclose(torch.nansum(pooled, -1), torch.ones(14), atol=1e-6)
    assert torch.isnan(pooled.triu(1)[pooled.triu(1) != 0]).all() and not torch.isnan(pooled.tril()).any()
    exact = pool_map(maps[:10, :10], 16)  # one position per bin: the map itself, future NaN
    assert torch.allclose(exact.nan_to_num(), maps[:10, :10]) and torch.isnan(exact[0, 1])


def test_sink_removal_renormalizes_rows():
    no_sink = drop_first_token(uniform_map(6))
    assert (no_sink[1:, 0] == 0).all() and torch.allclose(no_sink[1:].sum(-1), torch.ones(5))
    assert no_sink[0, 0] == 1


def test_scores_of_a_one_token_text_are_zero():
    scores = head_scores(torch.ones(2, 3, 1, 1), [7])
    assert all(s.shape == (2, 3) and (s == 0).all() for s in scores.values())


@pytest.fixture(scope="module")
def bundled():
    return GPT2.from_pretrained("shakespeare")


@pytest.fixture(scope="module")
def sharp_gpt2_small():
    """GPT-2 small's shape with random weights, queries and keys scaled up so attention is sharp."""
    torch.manual_seed(0)
    model = GPT2(50257, 768, 12, 12, 1024).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.c_attn.weight[: 2 * 768].mul_(4.0)
    return model


def capture_patterns(model, ids) -> list[torch.Tensor]:
    idx = torch.tensor([ids])
    with torch.inference_mode():
        _, cache = run_with_cache(
            model, idx, names_filter=lambda name: name.endswith("hook_pattern"), return_hidden=True
        )
    return [cache[f"blocks.{layer}.attn.hook_pattern"][0] for layer in range(model.config.num_layers)]


@pytest.mark.parametrize("which", ["bundled", "sharp"])
def test_maps_recomputed_from_the_cache_equal_a_capture_pass(which, bundled, sharp_gpt2_small):
    model = bundled if which == "bundled" else sharp_gpt2_small
    ids = get_tokenizer().encode("ROMEO:\nBut soft, what light through yonder window breaks? " * 4)
    analysis = analyze(model, ids)
    captured = capture_patterns(model, ids)
    for layer in range(model.config.num_layers):
        recomputed = layer_maps(model, analysis, layer)
        assert (recomputed - captured[layer]).abs().max() < 2e-3  # what a view shows vs a float32 pass
        assert torch.equal(layer_maps(model, analysis, layer, slice(1, 2))[0], recomputed[1])
    scores = head_scores(torch.stack(captured), ids)
    for name, value in scores.items():
        assert torch.allclose(analysis.scores[name], value, atol=1e-4), name
    if which == "sharp":  # far from uniform: the median row's largest weight (uniform rows: about 0.03)
        assert torch.stack(captured)[..., 1:, :].amax(-1).median() > 0.3


def test_the_analysis_keeps_the_residual_stream(bundled):
    ids = get_tokenizer().encode("The king and the queen went to the castle.")
    analysis = analyze(bundled, ids)
    idx = torch.tensor([ids])
    with torch.inference_mode():
        _, cache = run_with_cache(bundled, idx, names_filter=lambda name: "resid" in name)
        logits = bundled(idx)[0]
    # the analysis attends explicitly (the softmax it reads feeds the output), a plain pass through SDPA:
    # the same stream up to rounding
    assert torch.equal(analysis.resid[0], cache["blocks.0.hook_resid_pre"][0])
    for layer in range(1, bundled.config.num_layers):
        assert torch.allclose(analysis.resid[layer], cache[f"blocks.{layer}.hook_resid_pre"][0], atol=1e-5)
    assert torch.allclose(analysis.resid[-1], cache["blocks.5.hook_resid_post"][0], atol=1e-5)
    assert torch.allclose(final_hidden(bundled, analysis) @ bundled.lm_head.weight.T, logits, atol=1e-4)
    assert analysis.thumbnails.shape == (6, 4, len(ids), len(ids))  # fewer tokens than THUMB_AXIS


class LargestTensor(TorchDispatchMode):
    """Records the bytes of the largest tensor any operation makes while the mode is on."""

    def __init__(self):
        super().__init__()
        self.nbytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.nbytes = max(self.nbytes, t.numel() * t.element_size())
        return out


def test_an_analysis_never_makes_a_whole_map_and_keeps_little():
    """1,024 tokens: one layer's maps (H, T, T) would take 16 MiB; the pass never makes a tensor a
    quarter that size, and the analysis keeps the residual stream (L + 1, T, C) and thumbnails only."""
    H, T = 4, 1024
    torch.manual_seed(0)
    model = GPT2(50257, 64, H, 2, T).eval()
    ids = list(range(1000, 1000 + T))
    one_layers_maps = H * T * T * 4
    with torch.no_grad(), LargestTensor() as during_analysis:
        analysis = analyze(model, ids)
    assert during_analysis.nbytes < one_layers_maps / 4
    with torch.no_grad(), LargestTensor() as during_capture:  # the measure sees a map where one is made
        run_with_cache(model, torch.tensor([ids]), names_filter="blocks.0.attn.hook_pattern", return_hidden=True)
    assert during_capture.nbytes >= one_layers_maps
    assert analysis.resid.shape == (3, T, 64) and analysis.thumbnails.shape == (2, H, THUMB_AXIS, THUMB_AXIS)
    kept = analysis.resid.nbytes + analysis.thumbnails.nbytes + sum(s.nbytes for s in analysis.scores.values())
    assert analysis.nbytes == kept + 8 * T and kept < one_layers_maps / 4


COMMON_WORDS = (
    "the and to of my that you in is not with his be your for have he this me it but as so thou will what her by "
    "all shall lord good king sir come now our love here more if let well then there they at no how man their make"
)


def test_induction_probe_finds_the_bundled_models_induction_heads(bundled):
    pool = torch.tensor(sorted({get_tokenizer().encode(" " + word)[0] for word in COMMON_WORDS.split()}))
    ids = random_repeated_tokens(20, pool, seed=1)
    assert ids.shape == (40,) and torch.equal(ids[:20], ids[20:]) and ids[:20].unique().numel() == 20
    scores = induction_probe(bundled, pool, length=20, seeds=(0, 1))
    assert scores.shape == (6, 4) and scores[1].min() > 0.5 and scores[[0, *range(2, 6)]].max() < 0.2


def test_on_period_two_text_the_bundled_models_previous_token_head_keeps_its_role(bundled):
    """ "daughter been daughter been …": counting the previous token as an induction target, its
    previous-token head L0 H0 scored 0.99 on induction and was labelled induction; now it is not,
    and the induction heads of layer 1 still are."""
    analysis = analyze(bundled, get_tokenizer().encode(" daughter been" * 30))
    assert analysis.scores["previous-token"][0, 0] > 0.9 and analysis.scores["induction"][0, 0] < 0.1
    assert analysis.roles[0][0] == "previous-token" and analysis.roles[1] == ["induction"] * 4
