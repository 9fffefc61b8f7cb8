"""gpt2.heads: QK attribution is exact, composition and copying scores match their definitions, and
the bundled model's heads are explained as its model card says (docs/lab.md, "Heads explained")."""

import copy

import pytest
import torch

from gpt2 import GPT2, get_tokenizer
from gpt2.analysis import analyze
from gpt2.explorer.texts import REPEATED_EXAMPLE
from gpt2.heads import (
    CellError,
    HeadOutputs,
    UnknownModeError,
    composition_scores,
    copying_scores,
    model_roles,
    ov_table,
    qk_attribution,
    qk_attribution_from,
    qk_table,
)
from gpt2.hooks import run_with_cache


@pytest.fixture(scope="module")
def bundled():
    return GPT2.from_pretrained("shakespeare")


@pytest.fixture(scope="module")
def repeated():
    return get_tokenizer().encode(REPEATED_EXAMPLE)  # 11 tokens, then the same 11


def hook_scores(model, ids, layer):
    _, cache = run_with_cache(model, torch.tensor([ids]), names_filter=f"blocks.{layer}.attn.hook_attn_scores")
    return cache[f"blocks.{layer}.attn.hook_attn_scores"][0]  # (H, T, T)


def check_exact(model, ids, cells):
    analysis = analyze(model, ids)
    outputs = HeadOutputs(model, analysis)
    for layer, head, query, key in cells:
        scores = hook_scores(model, ids, layer)[head, query]
        cell = qk_attribution_from(model, analysis, layer, head, query, key, outputs)
        assert cell.score == pytest.approx(scores[key].item(), abs=1e-4)
        assert cell.query.sum().item() == pytest.approx(scores[key].item(), abs=1e-4)
        assert cell.key.sum().item() == pytest.approx(scores[key].item(), abs=1e-4)
        assert cell.matrix.shape == (len(cell.labels), len(cell.labels))
        visible_mean = scores[: query + 1].mean().item()
        assert cell.mean_score == pytest.approx(visible_mean, abs=1e-4)
        assert cell.key_contrast.sum().item() == pytest.approx(scores[key].item() - visible_mean, abs=1e-4)


def test_qk_parts_sum_to_the_score_on_the_bundled_model(bundled, repeated):
    cells = [(0, 0, 5, 4), (1, 0, 13, 3), (1, 2, 21, 0), (3, 1, 17, 9), (5, 3, 21, 21)]
    check_exact(bundled, repeated, cells)
    cell = qk_attribution(bundled, repeated, 5, 3, 21, 20)
    assert cell.labels[:2] == ["tok", "pos"] and cell.labels[-1] == "bias"
    assert {"L4H3", "b_O4", "MLP4"} <= set(cell.labels) and "L5H0" not in cell.labels


def test_qk_parts_sum_to_the_score_on_gpt2_small_shape():
    torch.manual_seed(0)
    model = GPT2(50257, 768, 12, 12, 64).eval()
    for block in model.blocks:  # biases as a trained model has them
        torch.nn.init.normal_(block.attn.c_attn.bias, std=0.1)
        torch.nn.init.normal_(block.attn.c_proj.bias, std=0.1)
        torch.nn.init.normal_(block.ln_1.bias, std=0.1)
        torch.nn.init.normal_(block.ln_1.weight, mean=1.0, std=0.2)
    ids = torch.randint(0, 50257, (40,), generator=torch.Generator().manual_seed(1)).tolist()
    check_exact(model, ids, [(11, 5, 39, 12), (6, 0, 20, 20), (0, 11, 7, 0)])


def test_qk_parts_sum_to_the_score_on_a_sharpened_model(bundled, repeated):
    sharp = copy.deepcopy(bundled)
    C = sharp.config.embed_dim
    with torch.no_grad():
        for block in sharp.blocks:
            block.attn.c_attn.weight[: 2 * C] *= 3.0  # queries and keys: scores 9 times larger
            block.attn.c_attn.bias[: 2 * C] *= 3.0
    probs = hook_scores(sharp, repeated, 1).softmax(-1)
    assert probs[0, 13].max() > 0.99  # as sharp as it gets
    check_exact(sharp, repeated, [(1, 0, 13, 3), (2, 1, 20, 10), (5, 0, 21, 1)])


def test_head_outputs_are_recomputed_once_and_counted(bundled, repeated):
    analysis = analyze(bundled, repeated)
    outputs = HeadOutputs(bundled, analysis)
    qk_attribution_from(bundled, analysis, 3, 0, 20, 5, outputs)
    T, C = len(repeated), bundled.config.embed_dim
    assert sorted(outputs.layers) == [0, 1, 2] and outputs.nbytes == 3 * T * C * 4
    _, cache = run_with_cache(bundled, torch.tensor([repeated]), names_filter="blocks.1.attn.hook_z")
    torch.testing.assert_close(outputs.layers[1], cache["blocks.1.attn.hook_z"][0], atol=1e-5, rtol=1e-5)
    kept = outputs.layers[0]
    qk_attribution_from(bundled, analysis, 2, 1, 21, 0, outputs)
    assert outputs.layers[0] is kept and sorted(outputs.layers) == [0, 1, 2]


@pytest.mark.parametrize(
    ("cell", "words"),
    [
        ((1, 0, 5, 6), "key 6 comes after query 5"),
        ((1, 4, 5, 1), "head 4 is out of range"),
        ((6, 0, 5, 1), "layer 6 is out of range"),
        ((-1, 0, 5, 1), "layer -1 is out of range"),
        ((1, 0, 22, 1), "query 22 is out of range"),
        ((1, 0, 5, -1), "key -1 is out of range"),
    ],
)
def test_bad_cells_are_one_clear_line(bundled, repeated, cell, words):
    with pytest.raises(CellError) as error:
        qk_attribution(bundled, repeated, *cell)
    assert isinstance(error.value, ValueError) and words in str(error.value) and "\n" not in str(error.value)


def test_the_induction_key_wins_because_of_the_previous_token_head(bundled, repeated):
    # query 13 is the second "honey"; key 3 ("winter") followed the first one
    for head in range(4):
        for query in (13, 16, 19):
            cell = qk_attribution(bundled, repeated, 1, head, query, query - 10)
            top_two = [cell.labels[k] for k in cell.key_contrast.topk(2).indices]
            assert "L0H0" in top_two, (head, query, top_two)


def direct_composition(model, mode):
    """Every score from C × C products of the raw weights, in float64."""
    L, H, C = model.config.num_layers, model.config.num_heads, model.config.embed_dim
    D = C // H
    W = [b.attn.c_attn.weight.detach().double() for b in model.blocks]
    P = [b.attn.c_proj.weight.detach().double() for b in model.blocks]

    def rows(layer, part, head):  # (C, D): x @ this is the head's q, k or v
        return W[layer][part * C + head * D : part * C + (head + 1) * D].T

    def ov(layer, head):
        return rows(layer, 2, head) @ P[layer][:, head * D : (head + 1) * D].T

    def qk(layer, head):
        return rows(layer, 0, head) @ rows(layer, 1, head).T

    out = torch.zeros(L, H, L, H, dtype=torch.float64)
    for l1 in range(L):
        for h1 in range(H):
            for l2 in range(l1 + 1, L):
                for h2 in range(H):
                    right = {"q": qk(l2, h2), "k": qk(l2, h2).T, "v": ov(l2, h2)}[mode]
                    left = ov(l1, h1)
                    out[l1, h1, l2, h2] = (left @ right).norm() / (left.norm() * right.norm())
    return out


@pytest.fixture
def small():
    torch.manual_seed(0)
    return GPT2(64, 32, 4, 3, 16).eval()


@pytest.mark.parametrize("mode", ["q", "k", "v", "K"])
def test_composition_matches_the_product_of_weights(small, mode):
    scores = composition_scores(small, mode)
    expected = direct_composition(small, mode.lower())
    assert scores.shape == (3, 4, 3, 4)
    torch.testing.assert_close(scores.double(), expected, atol=1e-5, rtol=1e-4)
    later = torch.arange(3)[:, None, None, None] < torch.arange(3)[None, None, :, None]
    assert (scores[~later.expand_as(scores)] == 0).all() and (scores[later.expand_as(scores)] > 0).all()


def test_composition_ignores_the_scale_of_the_senders_output(small):
    before = {mode: composition_scores(small, mode).clone() for mode in "qkv"}
    with torch.no_grad():
        small.blocks[0].attn.c_proj.weight[:, 8:16] *= 7.0  # W_O of L0 H1
    for mode in "qkv":
        torch.testing.assert_close(composition_scores(small, mode), before[mode], atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        small.blocks[0].attn.c_proj.weight[:, 8:16] += torch.randn(32, 8)  # a real change is seen
    assert not torch.allclose(composition_scores(small, "k")[0, 1], before["k"][0, 1])


def test_an_unknown_mode_is_a_typed_error(small):
    with pytest.raises(UnknownModeError, match="unknown composition mode 'x': use q, k or v"):
        composition_scores(small, "x")
    with pytest.raises(ValueError):
        composition_scores(small, None)


def copying_model(sign: float):
    """One layer; head 0 writes back what it reads, through a projection: W_OV = 2 P, and the
    embedding is tied, so the full OV circuit 2 W_E P W_Eᵀ is positive semi-definite."""
    torch.manual_seed(0)
    model = GPT2(50, 16, 2, 1, 8).eval()
    U = torch.linalg.qr(torch.randn(16, 8)).Q  # (C, D) orthonormal columns
    with torch.no_grad():
        model.blocks[0].attn.c_attn.weight[32:40] = U.T  # W_V = U
        model.blocks[0].attn.c_proj.weight[:, :8] = 2.0 * sign * U  # W_O = 2 sign Uᵀ
    return model


def test_copying_score_is_one_for_a_psd_circuit_and_minus_one_for_its_negative():
    assert copying_scores(copying_model(1.0))[0, 0].item() == pytest.approx(1.0, abs=1e-5)
    assert copying_scores(copying_model(-1.0))[0, 0].item() == pytest.approx(-1.0, abs=1e-5)
    assert abs(copying_scores(copying_model(1.0))[0, 1].item()) < 0.9  # a random head is neither


def test_token_tables_match_the_circuits(bundled):
    tokens = get_tokenizer().encode(" king queen")
    ov = ov_table(bundled, 1, 0, tokens, k=5)
    qk = qk_table(bundled, 0, 0, tokens, k=5, candidates=list(range(1000, 3000)))
    assert ov.ids.shape == ov.values.shape == (2, 5) and (ov.values[:, :-1] >= ov.values[:, 1:]).all()
    assert qk.ids.shape == (2, 5) and ((qk.ids >= 1000) & (qk.ids < 3000)).all()
    # the induction head L1 H0 copies: the token it reads is among the ones it writes
    assert all(token in row for token, row in zip(tokens, ov.ids.tolist(), strict=True))
    with pytest.raises(CellError):
        ov_table(bundled, 0, 4, tokens)


def test_the_bundled_models_roles_come_from_the_model_alone(bundled):
    roles = model_roles(bundled)
    assert roles.labels[0][0] == "previous-token"
    assert roles.labels[1] == ["induction"] * 4
    assert set(roles.scores) == {"previous-token", "duplicate-token", "induction", "sink", "copying"}
    assert all(s.shape == (6, 4) for s in roles.scores.values())
    assert model_roles(bundled) is roles  # cached
