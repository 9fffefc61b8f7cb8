"""The Training tab in a real browser, at 1440×900 and at 390×844: the bundled model's history, and
a run of our own served with --model whose step slider replays its snapshots on the visitor's text.

Skipped when /usr/bin/chromium or playwright is missing.
"""

import pytest
import torch
from conftest import CHROMIUM, DESKTOP, PHONE, running_app

from gpt2.history import read_history
from gpt2.paths import BUNDLED_MODEL_DIR
from gpt2.train import main

pytestmark = pytest.mark.slow

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
from playwright.sync_api import expect  # noqa: E402
from test_browser import REPEATED, WAIT_MS, browser_page, generate, in_view, open_tab  # noqa: E402

RUN = "tiny-run"
LINES = "(id) => document.querySelector(`#${id} .js-plotly-plot`)?.data?.filter((t) => t.mode === 'lines').length ?? 0"


@pytest.fixture(scope="module")
def served_run(tmp_path_factory):
    """The app serving a tiny run of 20 steps with snapshots every 10, beside the bundled model."""
    words = ["king", "queen", "sword", "crown", "night", "day", "love", "death"]
    gen = torch.Generator().manual_seed(0)
    corpus = tmp_path_factory.mktemp("data") / "corpus.txt"
    corpus.write_text(" ".join(words[i] for i in torch.randint(8, (6000,), generator=gen).tolist()), encoding="utf-8")
    out = tmp_path_factory.mktemp("runs") / RUN
    threads = torch.get_num_threads()
    main(
        ["--preset", "tiny", "--data", str(corpus), "--out", str(out), "--threads", "1", "--batch", "2"]
        + ["--max-steps", "20", "--eval-interval", "10", "--eval-windows", "2", "--snapshot-every", "10"]
    )
    torch.set_num_threads(threads)
    with running_app(tmp_path_factory.mktemp("app"), "--model", str(out)) as app:
        yield app


def fits(page, selector: str, width: int) -> bool:
    box = page.locator(selector).first.bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 1


def move_slider_to(page, fraction: float, phone: bool) -> None:
    """Move the step slider to `fraction` of its track as a visitor would: a tap on a phone, a drag
    of the thumb from its right end on a desktop."""
    track = page.locator("#train-step input[type=range]")
    track.scroll_into_view_if_needed()
    box = track.bounding_box()
    x, y = box["x"] + 4 + fraction * (box["width"] - 8), box["y"] + box["height"] / 2
    if phone:
        page.touchscreen.tap(x, y)
        return
    page.mouse.move(box["x"] + box["width"] - 4, y)
    page.mouse.down()
    page.mouse.move(x, y, steps=6)
    page.mouse.up()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_training_tab_plays_a_run_back(served_run, viewport):
    rows = read_history(BUNDLED_MODEL_DIR)
    with browser_page(served_run.url, viewport) as page:
        open_tab(page, "Training")
        expect(page.locator("#training-md")).to_contain_text("forms at step", timeout=WAIT_MS)
        page.wait_for_function(f"() => ({LINES})('train-heads') === 24", timeout=WAIT_MS)  # one line per head
        loss_steps = page.evaluate("() => document.querySelector('#train-loss .js-plotly-plot').data[1].x")
        assert loss_steps == [row["step"] for row in rows]
        assert not page.locator("#train-step").is_visible()  # the bundled model kept no snapshots
        for plot in ("#train-loss", "#train-icl", "#train-heads"):
            assert fits(page, plot, viewport["width"]), plot

        open_tab(page, "Attention")
        page.locator("#model input").click()
        page.get_by_role("option", name=RUN, exact=True).click()
        generate(page, REPEATED, max_tokens=2)  # the run's own text, replayed at each step
        open_tab(page, "Training")
        expect(page.locator("#training-md")).to_contain_text(f"{RUN}: 3 evaluations", timeout=WAIT_MS)
        expect(page.locator("#train-step")).to_be_visible(timeout=WAIT_MS)
        label = page.locator("#train-heatmap label").first
        expect(label).to_contain_text("Step 20:", timeout=WAIT_MS)  # the last snapshot, redrawn on the new text
        expect(label).to_contain_text("on your text")
        move_slider_to(page, 0.5, phone=viewport is PHONE)
        expect(label).to_contain_text("Step 10:", timeout=WAIT_MS)
        assert "on your text" in label.text_content()
        expect(page.locator("#train-grid label").first).to_contain_text("Step 10: every head on your text")
        page.wait_for_timeout(600)  # scrolled to the answer
        assert in_view(page, "#train-heatmap label")
        marked = "() => document.querySelector('#train-heads .js-plotly-plot').layout.shapes.map((s) => s.x0)"
        assert 10 in page.evaluate(marked)  # the head lines mark the step shown
        assert fits(page, "#train-heatmap", viewport["width"])
