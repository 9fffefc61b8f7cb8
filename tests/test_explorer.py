"""The app's logic, called directly: input checks, streaming, views, escaping, pooling, size bounds."""

import json

import numpy as np
import pytest
import torch
from conftest import HOSTILE_STRINGS

from gpt2 import GPT2, plots
from gpt2 import explorer as ex
from gpt2.quantize import Int8Linear
from gpt2.tokenizer import get_tokenizer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT2(50257, 32, 4, 2, 1024).eval()


@pytest.fixture(scope="module")
def hostile_analysis(model):
    ids = get_tokenizer().encode(" ".join(HOSTILE_STRINGS))
    return ex.analyze(model, ids)


def test_model_store_validates_names():
    store = ex.ModelStore()
    for bad in ("", "  ", None, "gpt3", "../../etc/passwd", "/tmp", "openai-community/../../x"):
        with pytest.raises(ex.UserInputError):
            store.get(bad)
    assert ex.ModelStore.resolve("openai-community/gpt2") == "gpt2"


def test_bundled_model_is_shared(monkeypatch):
    store = ex.ModelStore()
    assert store.get(ex.BUNDLED_NAME) is store.get(ex.BUNDLED_NAME)
    assert store.loaded() == [ex.BUNDLED_NAME]


def test_fast_decoding_uses_an_int8_copy_only_where_it_pays(monkeypatch):
    store = ex.ModelStore()
    bundled = store.get(ex.BUNDLED_NAME)
    assert store.decoder(ex.BUNDLED_NAME, True) is bundled  # 128 wide: float32 decodes faster
    monkeypatch.setattr(ex, "FAST_DECODE_MIN_WIDTH", 128)  # as for a GPT-2-wide model
    fast = store.decoder(ex.BUNDLED_NAME, True)
    assert isinstance(fast.lm_head, Int8Linear) and store.decoder(ex.BUNDLED_NAME, True) is fast
    assert store.decoder(ex.BUNDLED_NAME, False) is bundled
    with pytest.raises(ex.UserInputError, match="fast_decode"):
        store.decoder(ex.BUNDLED_NAME, "yes")


def test_prompt_checks():
    with pytest.raises(ex.UserInputError, match="empty"):
        ex.encode_prompt(" \n\t ", 64)
    with pytest.raises(ex.UserInputError, match="limit"):
        ex.encode_prompt("x" * (ex.MAX_PROMPT_CHARS + 1), 64)
    with pytest.raises(ex.UserInputError, match="text"):
        ex.encode_prompt(123, 64)
    ids, note = ex.encode_prompt("word " * 100, 64)
    assert len(ids) == 64 and "kept the last 64" in note
    ids, note = ex.encode_prompt("lone \ud800 surrogate, NUL \x00, e\u0301, שלום, 😀", 64)
    assert note == "" and "\ufffd" in get_tokenizer().decode(ids)


@pytest.mark.parametrize(
    "settings, message",
    [
        ((0, 1.0, 0, 1.0, 0), "max_new_tokens"),
        ((1_000_000, 1.0, 0, 1.0, 0), "max_new_tokens"),
        ((-5, 1.0, 0, 1.0, 0), "max_new_tokens"),
        ((10, -1.0, 0, 1.0, 0), "temperature"),
        ((10, 1.0, -1, 1.0, 0), "top_k"),
        ((10, 1.0, 60000, 1.0, 0), "top_k"),
        ((10, 1.0, 0, 0.0, 0), "top_p"),
        ((10, 1.0, 0, 1.5, 0), "top_p"),
        ((10, 1.0, 0, 1.0, 1.5), "seed"),
        ((10, 1.0, 0, 1.0, "x"), "seed"),
    ],
)
def test_bad_settings_are_one_line_errors(settings, message):
    with pytest.raises(ex.UserInputError, match=message) as info:
        ex.check_settings(*settings)
    assert "\n" not in str(info.value)


def test_settings_accept_slider_floats():
    s = ex.check_settings(40.0, 0, 50.0, 1.0, 3.0)
    assert s == ex.Settings(40, 0.0, 50, None, 3)


def test_streaming_yields_growing_text(model):
    prompt_ids = get_tokenizer().encode("Hello there")
    steps = list(ex.stream_generation(model, prompt_ids, ex.check_settings(8, 0, 0, 1.0, 0)))
    assert [len(ids) for _, ids in steps][:8] == list(range(len(prompt_ids) + 1, len(prompt_ids) + 9))
    final_text, final_ids = steps[-1]
    assert final_text == get_tokenizer().decode(final_ids[len(prompt_ids) :])
    greedy = model.generate(torch.tensor([prompt_ids]), 8, temperature=0)[0].tolist()
    assert final_ids == greedy


def test_analysis_shapes_and_scores(model):
    ids = get_tokenizer().encode("one two three four. one two three four.")
    analysis = ex.analyze(model, ids)
    T = len(ids)
    assert analysis.maps.shape == (2, 4, T, T) and analysis.maps.dtype == np.float32
    assert np.allclose(analysis.maps.sum(-1), 1, atol=1e-5)
    assert set(analysis.scores) == set(ex.SCORE_CHOICES)
    assert all(v.shape == (2, 4) for v in analysis.scores.values())
    choices = ex.head_choices(analysis)
    assert len(choices) == 8 and choices[5][1] == "1,1" and "prev" in choices[5][0]


def test_cache_is_bounded_in_bytes(model):
    cache = ex.AnalysisCache(budget_bytes=200_000)
    tok = get_tokenizer()
    for n in range(5):
        cache.get("m", model, tok.encode(f"prompt number {n} " * 20))
    assert len(cache) < 5 and cache.nbytes <= 200_000 * 2
    a = cache.get("m", model, [1, 2, 3])
    assert cache.get("m", model, [1, 2, 3]) is a


def test_heatmap_labels_are_escaped_and_distinct(hostile_analysis):
    fig, note = ex.heatmap_view(hostile_analysis, 0, 1)
    assert note == ""
    heat = fig.data[0]
    labels = list(heat.x)
    assert len(set(labels)) == len(labels) == len(hostile_analysis.ids)
    payload = fig.to_json()
    for raw in ("<script", "<img", "<b>", "</textarea"):
        assert raw not in payload
    assert "&lt;" in payload
    assert "query %{y} → key %{x}: %{z:.3f}" in heat.hovertemplate
    z = np.array(heat.z, dtype=float)
    assert np.isnan(z[0, 1]) and not np.isnan(z[1, 0])  # the future is masked


def test_every_view_escapes_hostile_text(model, hostile_analysis):
    grid, scores = ex.grid_view(hostile_analysis, "induction", (0, 0))
    bars = ex.next_token_view(model, hostile_analysis, 3)
    for fig in (grid, scores, bars, ex.heatmap_view(hostile_analysis, 1, ex.MEAN, hide_sink=True, log_scale=True)[0]):
        payload = fig.to_json()
        assert "<script" not in payload and "<img" not in payload and "<b>bold" not in payload


def test_options_mean_hide_sink_and_log(hostile_analysis):
    mean = ex.head_map(hostile_analysis, 1, ex.MEAN)
    assert np.allclose(mean, hostile_analysis.maps[1].mean(0))
    no_sink = ex.head_map(hostile_analysis, 1, 2, hide_sink=True)
    assert np.all(no_sink[1:, 0] == 0) and np.allclose(no_sink[1:].sum(-1), 1, atol=1e-6)
    log_fig, _ = ex.heatmap_view(hostile_analysis, 1, 2, log_scale=True)
    assert log_fig.data[0].zmin == -4 and log_fig.data[0].customdata is not None
    with pytest.raises(ex.UserInputError, match="layer"):
        ex.heatmap_view(hostile_analysis, 7, 0)
    with pytest.raises(ex.UserInputError, match="head"):
        ex.heatmap_view(hostile_analysis, 0, 9)


def test_chips_show_whitespace_and_query_attention(hostile_analysis):
    tok = get_tokenizer()
    ids = tok.encode("a\nb c")
    chips = ex.token_chips(ids, prompt_len=2)
    assert chips == [("a", "prompt"), ("↵", "prompt"), ("b", "generated"), ("␣c", "generated")]
    query = 5
    attn_chips = ex.attention_chips(hostile_analysis, 0, 1, query)
    scores = [score for _, score in attn_chips]
    assert all(s is None for s in scores[query + 1 :])
    assert max(scores[: query + 1]) == 1.0 and all(0 <= s <= 1 for s in scores[: query + 1])
    row = hostile_analysis.maps[0, 1, query, : query + 1]
    assert np.allclose(scores[: query + 1], row / row.max(), atol=1e-3)
    assert attn_chips[query][0].startswith("[")


def test_long_inputs_are_pooled_under_a_megabyte(model):
    ids = list(range(1000, 2024))  # 1024 tokens
    analysis = ex.analyze(model, ids)
    fig, note = ex.heatmap_view(analysis, 0, 0)
    assert "pooled" in note and len(fig.data[0].x) <= plots.MAX_AXIS
    pooled = np.array(fig.data[0].z, dtype=float)
    assert np.allclose(np.nansum(pooled, -1), 1, atol=1e-4)  # pooled rows still sum to 1
    grid, scores = ex.grid_view(analysis, "entropy", (0, 0))
    for figure in (fig, grid, scores, ex.next_token_view(model, analysis, 1023)):
        assert plots.figure_bytes(figure) < 1_000_000


def test_figure_for_256_tokens_is_exact_and_under_a_megabyte(model):
    analysis = ex.analyze(model, list(range(500, 756)))
    fig, note = ex.heatmap_view(analysis, 1, 3)
    assert note == "" and plots.figure_bytes(fig) < 1_000_000
    z = np.array(fig.data[0].z, dtype=float)
    assert np.allclose(np.nan_to_num(z), analysis.maps[1, 3], atol=1e-6)


def test_exports(tmp_path, hostile_analysis):
    npz = ex.save_npz(hostile_analysis, tmp_path / "a.npz", "tiny")
    data = np.load(npz)
    assert data["attention"].shape == hostile_analysis.maps.shape
    assert list(data["tokens"]) == hostile_analysis.tokens and str(data["model"]) == "tiny"
    html_path = ex.save_html(ex.heatmap_view(hostile_analysis, 0, 0)[0], tmp_path / "a.html")
    page = html_path.read_text()
    assert "<script>alert(1)</script>" not in page and "plotly" in page.lower()


def test_attention_json(hostile_analysis):
    out = ex.attention_json(hostile_analysis, 1, 0)
    json.dumps(out)
    T = len(hostile_analysis.ids)
    assert out["tokens"] == hostile_analysis.tokens and len(out["attention"]) == T
    assert all(len(row) == T for row in out["attention"])
    assert abs(sum(out["attention"][-1]) - 1) < 1e-4 and out["attention"][0][1:] == [0.0] * (T - 1)


def test_bf16_analysis_keeps_the_maps_within_a_hundredth(model):
    """bf16 matmuls in the layers, float32 scores and softmax: the maps people read stay within 1e-2
    of float32's, also for sharp attention (query and key weights scaled up). The bundled model's
    trained heads are sharper still (up to 0.017 off in bf16), so models of its width analyze in
    float32 by default, which is also faster for them."""
    sharp = GPT2(50257, 64, 4, 3, 256).eval()
    with torch.no_grad():
        for block in sharp.blocks:
            block.attn.c_attn.weight[:128].mul_(8.0)  # queries and keys
    bundled = ex.ModelStore().get(ex.BUNDLED_NAME)
    ids = get_tokenizer().encode("ROMEO:\nBut soft, what light through yonder window breaks? " * 6)
    assert bundled.config.embed_dim < ex.BF16_ANALYSIS_MIN_WIDTH
    assert np.array_equal(ex.analyze(bundled, ids).maps, ex.analyze(bundled, ids, bf16=False).maps)
    for net in (model, sharp):
        exact, fast = ex.analyze(net, ids, bf16=False), ex.analyze(net, ids, bf16=True)
        assert np.abs(exact.maps - fast.maps).max() < 1e-2
        assert np.allclose(fast.maps.sum(-1), 1, atol=1e-5) and np.all(np.triu(fast.maps, 1) == 0)
        if net is sharp:  # far from uniform: the median row's largest weight, about 0.03 for uniform rows
            assert np.median(exact.maps[..., 1:, :].max(-1)) > 0.15
