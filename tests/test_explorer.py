"""The app's logic, called directly: model store, input checks, sessions and long texts, the cache,
the views (escaping, pooling, sizes), the lab's views and the exports."""

import csv
import io
import json
import threading
import time
import zipfile

import numpy as np
import pytest
import torch
from conftest import HOSTILE_STRINGS

from gpt2 import GPT2
from gpt2.analysis import layer_maps
from gpt2.explorer import export, figures, lab_views, views
from gpt2.explorer.cache import AnalysisCache
from gpt2.explorer.inputs import (
    MAX_PROMPT_CHARS,
    MEAN,
    UserInputError,
    encode_prompt,
    parse_heads,
    sampling_settings,
    toggled_head,
)
from gpt2.explorer.models import BUNDLED_NAME, ModelStore, decoding_note
from gpt2.explorer.session import Session
from gpt2.quantize import Int8Linear
from gpt2.tokenizer import get_tokenizer
from gpt2.weights import ModelLoadError


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT2(50257, 32, 4, 2, 1024).eval()


@pytest.fixture(scope="module")
def cache():
    return AnalysisCache()


@pytest.fixture(scope="module")
def hostile(model, cache):
    return cache.get("tiny", model, get_tokenizer().encode(" ".join(HOSTILE_STRINGS)))


# ---- models --------------------------------------------------------------------------------------


def test_model_store_validates_names():
    store = ModelStore()
    for bad in ("", "  ", None, "gpt3", "../../etc/passwd", "/tmp", "openai-community/../../x"):
        with pytest.raises(UserInputError):
            store.get(bad)
    assert store.resolve("openai-community/gpt2") == "gpt2"
    assert store.get(BUNDLED_NAME) is store.get(BUNDLED_NAME) and store.loaded() == [BUNDLED_NAME]


def test_fast_decoding_uses_an_int8_copy_only_where_it_pays(monkeypatch):
    from gpt2 import precision

    store = ModelStore()
    bundled = store.get(BUNDLED_NAME)
    assert store.decoder(BUNDLED_NAME, True) is bundled  # 128 wide: float32 decodes faster
    monkeypatch.setattr(precision, "WIDE_MODEL_MIN_WIDTH", 128)  # as for a GPT-2-wide model
    fast = store.decoder(BUNDLED_NAME, True)
    assert isinstance(fast.lm_head, Int8Linear) and store.decoder(BUNDLED_NAME, True) is fast
    assert decoding_note(fast, True) in ("fast decoding: int8", "fast decoding: int8, 7-bit activations")
    assert store.decoder(BUNDLED_NAME, False) is bundled and decoding_note(bundled, False) == ""
    with pytest.raises(UserInputError, match="fast_decode"):
        store.decoder(BUNDLED_NAME, "yes")


def test_a_local_checkpoint_joins_the_list_under_its_name(tmp_path, model):
    model.save_pretrained(tmp_path / "my-run")
    store = ModelStore()
    assert store.add_local(tmp_path / "my-run") == "my-run"
    assert store.choices()[:2] == [BUNDLED_NAME, "my-run"] and "gpt2" in store.choices()
    assert torch.equal(store.get("my-run").wte.weight, model.wte.weight)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="has no model.safetensors") as info:
        store.add_local(tmp_path / "empty")
    assert "\n" not in str(info.value) and "empty" not in store.choices()


def test_loading_one_model_does_not_block_another(monkeypatch, model):
    """While a slow model loads (a Hub download), the loaded bundled model is served at once."""
    store = ModelStore()
    store.get(BUNDLED_NAME)
    started, release = threading.Event(), threading.Event()
    real = GPT2.from_pretrained.__func__

    def slow(cls, name, **kwargs):
        if name == "gpt2":
            started.set()
            release.wait(10)
            return model
        return real(cls, name, **kwargs)

    monkeypatch.setattr(GPT2, "from_pretrained", classmethod(slow))
    loader = threading.Thread(target=store.get, args=("gpt2",))
    loader.start()
    try:
        assert started.wait(10)
        begin = time.monotonic()
        assert store.get(BUNDLED_NAME).config.embed_dim == 128
        assert time.monotonic() - begin < 0.5
        assert "gpt2" not in store.loaded()
    finally:
        release.set()
        loader.join()
    assert store.get("gpt2") is model


# ---- inputs and sessions -------------------------------------------------------------------------


def test_prompt_checks():
    with pytest.raises(UserInputError, match="empty"):
        encode_prompt(" \n\t ", 64)
    with pytest.raises(UserInputError, match="limit"):
        encode_prompt("x" * (MAX_PROMPT_CHARS + 1), 64)
    with pytest.raises(UserInputError, match="text"):
        encode_prompt(123, 64)
    total = len(get_tokenizer().encode("word " * 100))
    prompt = encode_prompt("word " * 100, 64)
    assert len(prompt.ids) == 64 and prompt.cut == total - 64 and f"first {total - 64} were cut" in prompt.note
    prompt = encode_prompt("lone \ud800 surrogate, NUL \x00, e\u0301, שלום, 😀", 64)
    assert prompt.cut == 0 and prompt.note == "" and "\ufffd" in get_tokenizer().decode(prompt.ids)


@pytest.mark.parametrize(
    "settings, message",
    [
        ((0, 1.0, 0, 1.0, 0), "max_new_tokens"),
        ((1_000_000, 1.0, 0, 1.0, 0), "max_new_tokens"),
        ((10, -1.0, 0, 1.0, 0), "temperature"),
        ((10, 1.0, -1, 1.0, 0), "top_k"),
        ((10, 1.0, 0, 1.5, 0), "top_p"),
        ((10, 1.0, 0, 1.0, 1.5), "seed"),
        ((10, 1.0, 0, 1.0, "x"), "seed"),
    ],
)
def test_bad_settings_are_one_line_errors(settings, message):
    with pytest.raises(UserInputError, match=message) as info:
        sampling_settings(*settings)
    assert "\n" not in str(info.value)


def test_long_texts_are_numbered_as_the_model_sees_them():
    """A 900-token prompt cut to the last 256, then 40 generated: chips, maps and status cover the
    last 256 tokens, after one ✂ marker, and are numbered 0..255 within that window."""
    session = Session(BUNDLED_NAME, tuple(range(1000, 1256)), 256, prompt_cut=644).with_ids(range(1000, 1296))
    window = session.window(256)
    assert window.ids == list(range(1040, 1296)) and window.cut == 684 and window.prompt_len == 216
    chips = views.token_chips(window, query=10)
    assert len(chips) == 257 and chips[0] == ("✂ 684 earlier tokens", None)
    assert [c for _, c in chips[1:]].count(views.QUERY) == 1 and chips[11][1] == views.QUERY
    assert chips[216][1] == views.PROMPT and chips[217][1] == views.GENERATED
    assert views.chip_position(window, 0) is None and views.chip_position(window, 11) == 10
    assert views.chip_position(window, 256) == 255 and views.chip_position(window, 257) is None
    short = Session(BUNDLED_NAME, (1, 2, 3), 2).window(256)
    assert short.cut == 0 and views.chip_position(short, 0) == 0 and len(views.token_chips(short)) == 3


# ---- cache ---------------------------------------------------------------------------------------


def test_cache_is_bounded_in_bytes_and_holds_sixteen_long_texts(model):
    one = AnalysisCache().get("m", model, list(range(1000, 2024))).nbytes
    cache = AnalysisCache(budget_bytes=16 * one + one // 2)
    for n in range(20):
        cache.get("m", model, list(range(n, n + 1024)))
    assert len(cache) == 16 and cache.nbytes <= cache.budget_bytes
    again = cache.get("m", model, list(range(19, 1043)))
    assert cache.get("m", model, list(range(19, 1043))) is again


def test_head_lists_are_checked_and_toggled():
    assert parse_heads("l0h0, L1", 3, 4) == ((0, 0), (1, 0), (1, 1), (1, 2), (1, 3))
    for bad, message in (("L3", "layer 3"), ("L0H4", "head 4"), ("head 2", "not a head"), ("", "at least one")):
        with pytest.raises(UserInputError, match=message):
            parse_heads(bad, 3, 4)
    with pytest.raises(UserInputError, match="not a head or layer: 'foo bar'"):  # as typed, spaces kept
        parse_heads("foo bar", 3, 4)
    assert parse_heads("L1 H2", 3, 4) == ((1, 2),)
    assert toggled_head("L1, l0h2", 0, 2) == "L1" and toggled_head("L1", 0, 2) == "L1, L0H2"


# ---- views ---------------------------------------------------------------------------------------


def texts_of(fig) -> list[str]:
    """Every string a figure carries (labels, hover text, tick labels, titles)."""
    found, stack = [], [fig.to_plotly_json()]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, np.ndarray)):
            stack.extend(np.asarray(item, dtype=object).ravel().tolist())
    return found


def test_heatmap_labels_are_escaped_distinct_and_the_query_row_outlined(model, hostile):
    chart, label = views.heatmap_view(model, hostile, 0, 1, query=3)
    fig = figures.draw(chart)
    heat = fig.data[0]
    labels = list(heat.x)
    assert len(set(labels)) == len(labels) == len(hostile.analysis.ids) and "L0 H1" in label
    # the hostile text's "<" tokens are in the labels, escaped (checking the JSON instead could not
    # fail: Plotly's writer turns every raw "<" into \\u003c)
    assert any("&lt;" in name for name in labels) and not any("<" in name for name in labels)
    payload = figures.figure_json(fig)
    assert "query %{y} → key %{x}: %{z:.3f}" in heat.hovertemplate
    z = np.array(heat.z, dtype=float)
    assert np.isnan(z[0, 1]) and not np.isnan(z[1, 0])  # the future is masked
    (row,) = fig.layout.shapes
    assert (row.y0, row.y1) == (2.5, 3.5)
    assert json.loads(payload)["config"]["displayModeBar"] is False


def test_every_view_escapes_hostile_text(model, hostile):
    probs = views.next_token_probs(model, hostile, 3)
    with_tokens = [
        views.heatmap_view(model, hostile, 1, MEAN, hide_sink=True, log_scale=True)[0],
        lab_views.loss_view(model, hostile).chart,
        lab_views.lens_view(model, hostile).chart,
    ]
    without_tokens = [
        views.grid_view(hostile, (0, 0)),
        views.score_view(hostile, "induction", (0, 0)),
        views.next_token_view(probs, 3)[0],
        *(view.chart for view in lab_views.attribution_view(model, hostile, 5, 10)),
    ]
    for chart in with_tokens + without_tokens:
        texts = texts_of(figures.draw(chart))
        assert not any("<script" in t or "<img" in t or "<b>bold" in t for t in texts), chart.kind
    for chart in with_tokens:  # the text's "<" tokens, escaped
        assert any("&lt;" in t for t in texts_of(figures.draw(chart))), chart.kind


def test_options_mean_hide_sink_and_log(model, hostile):
    maps = layer_maps(model, hostile.analysis, 1).numpy()
    assert np.allclose(views.head_map(model, hostile, 1, MEAN), maps.mean(0), atol=1e-6)
    assert np.array_equal(views.head_map(model, hostile, 1, 2), maps[2])
    no_sink = views.head_map(model, hostile, 1, 2, hide_sink=True)
    assert np.all(no_sink[1:, 0] == 0) and np.allclose(no_sink[1:].sum(-1), 1, atol=1e-6)
    log_fig = figures.draw(views.heatmap_view(model, hostile, 1, 2, log_scale=True)[0])
    assert log_fig.data[0].zmin == -4 and log_fig.data[0].customdata is not None
    with pytest.raises(UserInputError, match="layer"):
        views.heatmap_view(model, hostile, 7, 0)
    with pytest.raises(UserInputError, match="head"):
        views.heatmap_view(model, hostile, 0, 9)


def test_query_chips_show_what_the_query_sees_and_nothing_after(model, hostile):
    query = 5
    chips = views.query_chips(model, hostile, 0, 1, query)
    scores = [score for _, score in chips[: query + 1]]
    row = views.head_map(model, hostile, 0, 1)[query, : query + 1]
    assert np.allclose(scores, row / row.max(), atol=1e-3) and max(scores) == 1.0
    assert chips[query][0].startswith("[") and len(chips) == query + 2
    later = len(hostile.analysis.ids) - query - 1
    assert chips[-1] == (f"… {later} later tokens (the query cannot see them)", None)


def test_next_token_bars_carry_their_values_on_an_axis_that_fits(model, hostile):
    fig = figures.draw(views.next_token_view(views.next_token_probs(model, hostile, 3), 3)[0])
    bar = fig.data[0]
    assert len(bar.x) == 10 and list(bar.text) == [figures.probability_text(p) for p in bar.x]
    assert bar.text[0] == f"{bar.x[0]:.1e}"  # a random model's tiny probabilities still read
    assert fig.layout.xaxis.range[1] == pytest.approx(max(bar.x) * 1.25)


def test_long_inputs_are_pooled_under_a_megabyte(model, cache):
    entry = cache.get("tiny", model, list(range(1000, 2024)))  # 1,024 tokens
    chart, label = views.heatmap_view(model, entry, 0, 0, query=1023)
    fig = figures.draw(chart)
    assert "pooled in bins of 4" in label and len(fig.data[0].x) == figures.MAX_AXIS
    assert np.allclose(np.nansum(np.array(fig.data[0].z, dtype=float), -1), 1, atol=1e-4)
    assert fig.layout.shapes[0].y0 == 255 - 0.5
    lens = lab_views.lens_view(model, entry)
    lens_fig = figures.draw(lens.chart)
    assert len(lens_fig.data[0].x) == figures.MAX_AXIS and len(lens.data["top_token"][0]) == 1024
    for each in (chart, views.grid_view(entry, (0, 0)), views.score_view(entry, "entropy", (0, 0)), lens.chart):
        assert figures.figure_bytes(figures.draw(each)) < 1_000_000
    assert views.heatmap_click_position(entry, 10) == 40


def test_a_256_token_heatmap_is_exact(model, cache):
    entry = cache.get("tiny", model, list(range(500, 756)))
    chart, label = views.heatmap_view(model, entry, 1, 3)
    fig = figures.draw(chart)
    assert "pooled" not in label and figures.figure_bytes(fig) < 1_000_000
    z = np.array(fig.data[0].z, dtype=float)
    assert np.allclose(np.nan_to_num(z), layer_maps(model, entry.analysis, 1)[3].numpy(), atol=1e-6)


def test_attention_json(model, hostile):
    out = views.attention_json(model, hostile, 1, 0)
    T = len(hostile.analysis.ids)
    assert out["tokens"] == hostile.tokens and len(out["attention"]) == T
    assert abs(sum(out["attention"][-1]) - 1) < 1e-4 and out["attention"][0][1:] == [0.0] * (T - 1)
    whole = np.round(views.head_map(model, hostile, 1, 0).astype(np.float64), 6)
    assert np.array_equal(np.array(out["attention"]), whole)


def test_shown_maps_do_not_keep_analyses_the_cache_let_go(model):
    import gc
    import weakref

    entry = AnalysisCache().get("m", model, list(range(300, 340)))
    views.head_map(model, entry, 0, 1)
    analysis = weakref.ref(entry.analysis)
    del entry
    gc.collect()
    assert analysis() is None


def test_lab_targets_positions_and_their_errors(model, hostile):
    T = len(hostile.analysis.ids)
    assert lab_views.resolve_target(hostile, 3, "") == (3, hostile.analysis.ids[4])
    assert lab_views.resolve_target(hostile, -1, " king") == (T - 1, get_tokenizer().encode(" king")[0])
    position, target = lab_views.with_default_target(model, hostile, -1, "")
    assert position == T - 1 and target == int(views.next_token_probs(model, hostile, T - 1).argmax())
    with pytest.raises(UserInputError, match="exactly one token; ' two words' is 2 tokens"):
        lab_views.resolve_target(hostile, 0, " two words")
    with pytest.raises(UserInputError, match=f"between 0 and {T - 1}"):
        lab_views.resolve_target(hostile, T, "")


# ---- exports -------------------------------------------------------------------------------------


def test_npz_holds_every_layer_in_float16_within_its_bound(tmp_path, model, hostile):
    path = export.save_npz(model, hostile, tmp_path / "a.npz", "tiny")
    data = np.load(path)
    for layer in range(2):
        stored = data[f"attention_L{layer}"]
        exact = layer_maps(model, hostile.analysis, layer).numpy()
        assert stored.dtype == np.float16 and stored.shape == exact.shape
        assert np.abs(stored.astype(np.float32) - exact).max() <= export.FLOAT16_ERROR
    assert list(data["tokens"]) == hostile.tokens and str(data["model"]) == "tiny"
    assert data["score_induction"].shape == (2, 4)
    assert len(zipfile.ZipFile(path).namelist()) == 2 + 3 + 4


def test_html_exports_are_titled_and_inert(tmp_path, model, hostile):
    chart, _ = views.heatmap_view(model, hostile, 0, 0)
    title = f"tiny · L0 H0 · “{export.text_start(hostile.tokens)}”"
    page = export.save_html(chart, tmp_path / "a.html", title).read_text()
    assert "<script>alert(1)</script>" not in page and "plotly" in page.lower()
    assert "<title>tiny · L0 H0 · “&lt;script&gt;alert(1)&lt;/script&gt;" in page
    files = export.save_view(tmp_path, "loss", lab_views.loss_view(model, hostile), title)
    assert [f.suffix for f in files] == [".json", ".csv", ".html"]
    data = json.loads(files[0].read_text())
    assert data["title"] == title and len(data["loss"]) == len(hostile.tokens) - 1
    rows = list(csv.reader(io.StringIO(files[1].read_text())))
    assert rows[0] == ["position", "token", "loss", "entropy"] and len(rows) == len(hostile.tokens)
