"""End to end in a real browser: the app streams text, draws the heatmap with hover values, switches
heads, and shows hostile prompt text as text (never as HTML) without a dialog, a page error or a
console error. Also saves `assets/screenshot.png`.

Uses Playwright's sync API with Debian's Chromium (`/usr/bin/chromium`); skipped when either is missing.
"""

import io
import re
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import HOSTILE_STRINGS

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "assets" / "screenshot.png"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NEW_TOKENS = 100
WAIT_MS = 120_000  # generous, for anything the server does: the test machine may be small and busy
HOVER_MS = 10_000  # plotly draws hover labels in the page itself

SCRIPT = "<script>alert(1)</script>"
HOSTILE = f"ROMEO:\n{SCRIPT} <img src=x onerror=alert(1)> ${{alert(1)}} javascript:alert(1) </textarea> <b>bold</b>"
HOVER_RE = re.compile(r"query '.*' \(\d+\) → key '.*' \(\d+\): \d\.\d{3}")
HEAD_RE = re.compile(r"L(\d+) H(\d+) · (.+?) \(prev \d\.\d\d, ind \d\.\d\d, sink \d\.\d\d\)")
PLOTS = ("#heatmap", "#next-tokens", "#grid", "#scores")

# Records every distinct length of the output textarea's value, polled every few milliseconds in the
# page itself (a round trip from Python per poll could miss a quick stream).
RECORD_LENGTHS = """() => {
    const area = document.querySelector('#output textarea');
    window.__lengths = [area.value.length];
    window.__recorder = setInterval(() => {
        const n = area.value.length;
        if (window.__lengths[window.__lengths.length - 1] !== n) window.__lengths.push(n);
    }, 2);
}"""
STOP_RECORDING = "() => { clearInterval(window.__recorder); return window.__lengths; }"


def _wait_done(page, new_tokens: int) -> list[str]:
    """Wait until generation has finished and the views below show the new text; return its token chips."""
    status = page.locator("#status textarea")
    expect(status).to_have_value(re.compile(rf"^Done: {new_tokens} new tokens"), timeout=WAIT_MS)
    chips = page.locator("#chips .token .text").all_text_contents()
    # the views are drawn by a second event once generation ends: wait for the next-token chart of the
    # last token (the query resets to it) and a heatmap over exactly these tokens
    expect(page.locator("#next-tokens .gtitle")).to_have_text(
        f"next token after '{chips[-1]}' ({len(chips) - 1})", timeout=WAIT_MS
    )
    page.wait_for_function(
        """([n, first]) => {
            const plot = document.querySelector('#heatmap .js-plotly-plot');
            const y = plot && plot.data && plot.data[0] && plot.data[0].y;
            const text = (s) => new DOMParser().parseFromString(s, 'text/html').documentElement.textContent;
            return Boolean(y) && y.length === n && text(y[0]) === first;
        }""",
        arg=[len(chips), f"'{chips[0]}' (0)"],
        timeout=WAIT_MS,
    )
    expect(page.locator("#head input")).to_have_value(HEAD_RE, timeout=WAIT_MS)
    return chips


def _set_max_tokens(page, value: int) -> None:
    """Set the "Max new tokens" slider (in the open Sampling accordion) and wait until both its range
    and its number box show the value, so that Generate sends it. The accordion mounts the slider
    asynchronously, so an early fill can be lost: fill again until the number box follows."""
    slider, number = (
        page.locator("#max-new-tokens input[type=range]"),
        page.locator("#max-new-tokens input[type=number]"),
    )
    expect(slider).to_be_visible(timeout=WAIT_MS)
    for _ in range(40):  # until the value holds for half a second (a late re-render can reset it)
        if number.input_value() != str(value):
            slider.fill(str(value))
        page.wait_for_timeout(500)
        if number.input_value() == str(value) == slider.input_value():
            break
    expect(number).to_have_value(str(value), timeout=HOVER_MS)


def _plot_area(page, plot="#heatmap"):
    """The plot area's box in the viewport (scrolled into view: the mouse only reaches what is shown)."""
    area = page.locator(f"{plot} .nsewdrag").first
    area.evaluate("(element) => element.scrollIntoView({block: 'center'})")
    box = area.bounding_box()
    viewport = page.viewport_size
    assert box and box["width"] > 50 and box["height"] > 50, box
    assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], (box, viewport)
    return box


def _hover_cell(page, query: int, key: int, n: int) -> str:
    """Hover the heatmap cell (query row, key column) of an n-token map; return plotly's hover label."""
    box = _plot_area(page)
    x = box["x"] + (key + 0.5) / n * box["width"]
    y = box["y"] + (query + 0.5) / n * box["height"]  # the y axis is reversed: query 0 on top
    page.mouse.move(1, 1)  # leave first, so a label from an earlier hover cannot be read
    expect(page.locator("#heatmap .hoverlayer .hovertext")).to_have_count(0, timeout=HOVER_MS)
    page.mouse.move(x, y, steps=3)
    label = page.locator("#heatmap .hoverlayer .hovertext")
    expect(label).to_have_text(HOVER_RE, timeout=HOVER_MS)
    return label.text_content()


def _open_head_dropdown(page):
    page.locator("#head input").click()
    options = page.get_by_role("option")
    expect(options.first).to_be_visible(timeout=WAIT_MS)
    return options


def _pick_head(options, index: int) -> tuple[str, str]:
    """Click the index-th option of the open head dropdown; return (its label, the heatmap title it should give)."""
    expect(options.nth(index)).to_be_visible(timeout=WAIT_MS)
    label = options.nth(index).inner_text().replace("✓", "").strip()
    match = HEAD_RE.fullmatch(label)
    assert match, label
    layer, head, role = match.groups()
    options.nth(index).click()
    return label, f"layer {layer}, head {head} ({role})"


def _choose_head(page, index: int) -> tuple[str, str]:
    return _pick_head(_open_head_dropdown(page), index)


def _choose_most_inductive_head(page) -> tuple[str, str]:
    """Pick the head whose dropdown label gives the highest induction score on the current text."""
    options = _open_head_dropdown(page)
    labels = options.all_inner_texts()
    scores = [float(re.search(r"ind (\d\.\d\d)", label).group(1)) for label in labels]
    return _pick_head(options, scores.index(max(scores)))


def _plot_texts(page) -> list[str]:
    return page.locator(", ".join(f"{plot} svg text" for plot in PLOTS)).all_text_contents()


@contextmanager
def _browser(url: str):
    """A Chromium page on `url` that records every dialog, page error and console error; fails the
    test on any of them when the block ends. No filtering: the app makes no request that fails
    (favicon included), so any console error counts."""
    errors, page_errors, dialogs = [], [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1800})

            def watch(page):
                page.on("console", lambda msg: msg.type == "error" and errors.append(f"{msg.text} at {msg.location}"))
                page.on("pageerror", lambda exc: page_errors.append(str(exc)))
                page.on("dialog", lambda dialog: (dialogs.append(f"{dialog.type}: {dialog.message}"), dialog.dismiss()))

            context.on("page", watch)
            page = context.new_page()
            page.goto(url, wait_until="load", timeout=WAIT_MS)
            expect(page.locator("#generate")).to_be_visible(timeout=WAIT_MS)
            yield page, dialogs
        finally:
            browser.close()
    assert not dialogs, dialogs
    assert not page_errors, page_errors
    assert not errors, errors


def _assert_inert(page, dialogs) -> None:
    """No element, link, bold text or script that the hostile text could have made, and no dialog."""
    for selector in ("img[src='x']", "[onerror]", "a[href^='javascript']", "b:has-text('bold')"):
        assert page.locator(selector).count() == 0, selector
    for area in ("#chips", "#attn-chips", "#output", "#status", *PLOTS):
        assert page.locator(f"{area} b, {area} img").count() == 0, area
    # plotly turns <b> into a bold tspan and <a> into an svg link: neither may come from the text
    assert page.locator(", ".join(f"{p} svg tspan[style*='bold'], {p} svg a" for p in PLOTS)).count() == 0
    assert not page.evaluate("() => [...document.scripts].some(s => s.textContent.includes('alert('))"), (
        "an injected <script> element"
    )
    assert not dialogs, dialogs


def test_browser_end_to_end(app_server):
    with _browser(app_server) as (page, dialogs):
        # ---- 1. hostile prompt, streamed output ---------------------------------------------------
        page.locator("#prompt textarea").fill(HOSTILE)
        # a longer text than the default 40 tokens, so that streaming shows on a fast machine too
        page.get_by_text("Sampling", exact=True).click()
        _set_max_tokens(page, NEW_TOKENS)
        page.evaluate(RECORD_LENGTHS)
        start = time.monotonic()
        page.locator("#generate").click()
        chip_texts = _wait_done(page, NEW_TOKENS)
        lengths = page.evaluate(STOP_RECORDING)
        output = page.locator("#output textarea").input_value()
        print(f"generation and views: {time.monotonic() - start:.1f} s; output lengths seen: {lengths}")
        assert output.startswith(HOSTILE) and len(output) > len(HOSTILE), output
        assert lengths[-1] == len(output) == max(lengths), lengths
        intermediate = {n for n in lengths if 0 < n < len(output)}
        assert len(intermediate) >= 2, f"the text did not stream: lengths seen {lengths}"

        # ---- 2. hostile text shows as text ----------------------------------------------------------
        n_tokens = len(chip_texts)
        assert n_tokens > 10, chip_texts
        assert SCRIPT in "".join(chip_texts), chip_texts
        _assert_inert(page, dialogs)
        texts = _plot_texts(page)
        ticks = page.locator("#heatmap .xtick text, #heatmap .ytick text").all_text_contents()
        assert any(re.fullmatch(r"'.*[<>].*' \(\d+\)", t) for t in ticks), ticks  # "<", ">" as characters
        # labels are escaped once, for plotly; a second escape would show entities as text
        assert not [t for t in texts if re.search(r"&(lt|gt|amp|quot|#x?[0-9a-f]+);", t)], texts

        # ---- 3. hover a cell: any lower-left cell, then the cell "script" -> "<" ------------------
        box = _plot_area(page)
        page.mouse.move(box["x"] + 0.25 * box["width"], box["y"] + 0.75 * box["height"], steps=3)
        label = page.locator("#heatmap .hoverlayer .hovertext")
        expect(label).to_have_text(HOVER_RE, timeout=HOVER_MS)
        assert HOVER_RE.fullmatch(label.text_content()), label.text_content()
        lt = chip_texts.index("<")
        assert chip_texts[lt + 1] == "script", chip_texts
        hover = _hover_cell(page, lt + 1, lt, n_tokens)
        assert re.fullmatch(rf"query 'script' \({lt + 1}\) → key '<' \({lt}\): \d\.\d{{3}}", hover), hover

        # ---- 4. click the "<" token: it becomes the query ----------------------------------------
        page.locator("#chips .token").nth(lt).click()
        expect(page.locator("#status textarea")).to_have_value(f"Query: token {lt} '<'.", timeout=WAIT_MS)
        expect(page.locator("#next-tokens .gtitle")).to_have_text(f"next token after '<' ({lt})", timeout=WAIT_MS)
        expect(page.locator("#attn-chips .token .text").nth(lt)).to_have_text("[<]", timeout=WAIT_MS)

        # ---- 5. another head from the dropdown --------------------------------------------------
        title = page.locator("#heatmap .gtitle")
        first_head, first_title = page.locator("#head input").input_value(), title.text_content()
        assert first_head.startswith("L0 H0 · ") and first_title.startswith("layer 0, head 0 ("), first_title
        label, expected_title = _choose_head(page, 2)
        assert label.startswith("L0 H2 · ") and label != first_head, label
        expect(page.locator("#head input")).to_have_value(label, timeout=WAIT_MS)
        expect(title).to_have_text(expected_title, timeout=WAIT_MS)
        assert expected_title != first_title
        hover = _hover_cell(page, lt + 1, lt, n_tokens)
        assert re.fullmatch(rf"query 'script' \({lt + 1}\) → key '<' \({lt}\): \d\.\d{{3}}", hover), hover

        # ---- 6. a benign example for the screenshot ---------------------------------------------
        page.get_by_role("button", name=re.compile(r"^sword crown honey")).first.click()
        expect(page.locator("#prompt textarea")).to_have_value(re.compile(r"^sword crown honey"), timeout=WAIT_MS)
        page.locator("#generate").click()
        expect(page.locator("#output textarea")).to_have_value(re.compile(r"^sword crown honey"), timeout=WAIT_MS)
        _wait_done(page, NEW_TOKENS)
        # the same head stays chosen (its scores are those of the new text)
        expect(page.locator("#head input")).to_have_value(re.compile(rf"^{label.split(' · ')[0]} · "), timeout=WAIT_MS)
        expect(title).to_have_text(re.compile(rf"^{re.escape(expected_title.split(' (')[0])} \("), timeout=WAIT_MS)
        # the screenshot shows the bundled model's induction head on the repeated sequence
        label, induction_title = _choose_most_inductive_head(page)
        assert induction_title.endswith("(induction)"), label
        expect(title).to_have_text(induction_title, timeout=WAIT_MS)
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        # ---- 7. Stop cancels a long generation ----------------------------------------------------
        _set_max_tokens(page, 1000)
        page.locator("#generate").click()
        output_box = page.locator("#output textarea")
        expect(page.locator("#status textarea")).to_have_value(re.compile("^Generating 1000 tokens"), timeout=WAIT_MS)
        page.wait_for_function(
            "(n) => document.querySelector('#output textarea').value.length > n",
            arg=len(page.locator("#prompt textarea").input_value()) + 20,
            timeout=WAIT_MS,
        )
        page.locator("#stop").click()
        time.sleep(1.0)  # let an update already in flight arrive
        stopped_at = len(output_box.input_value())
        time.sleep(3.0)
        assert len(output_box.input_value()) == stopped_at, "text kept streaming after Stop"
        assert not page.locator("#status textarea").input_value().startswith("Done: 1000")


# a heatmap's row labels ("'tok' (i)", HTML-escaped for plotly) decoded back to the tokens' visible text
HEATMAP_TOKENS = """(selector) => document.querySelector(selector).data[0].y.map((label) => {
    const text = new DOMParser().parseFromString(label, 'text/html').documentElement.textContent;
    return text.replace(/^'(.*)' \\(\\d+\\)$/s, '$1');
})"""


def _as_text(visible_tokens: list[str]) -> str:
    """Token chips or labels joined back into text (the visible whitespace marks undone)."""
    return "".join(visible_tokens).replace("␣", " ").replace("↵", "\n")


def _token_start(chips: list[str], hostile: str) -> int:
    """Index of the first chip at or after where `hostile` begins in the text the chips spell."""
    offset, text = 0, _as_text(chips)
    start = text.index(hostile)
    for n, chip in enumerate(chips):
        if offset >= start:
            return n
        offset += len(_as_text([chip]))
    raise AssertionError(hostile)


def _assert_export_is_literal(page, html_path: Path, npz_bytes: bytes, chips: list[str]) -> None:
    """The exported heatmap page renders the tokens as text, runs nothing, and the .npz holds them verbatim."""
    import numpy as np

    data = np.load(io.BytesIO(npz_bytes), allow_pickle=False)
    tokens = [str(t) for t in data["tokens"]]
    assert [t.replace(" ", "␣").replace("\n", "↵") for t in tokens] == chips
    export = page.context.new_page()
    export.goto(html_path.as_uri(), wait_until="load", timeout=WAIT_MS)
    export.wait_for_selector(".js-plotly-plot .xtick text", timeout=WAIT_MS)
    labels = export.evaluate(HEATMAP_TOKENS, ".js-plotly-plot")
    ticks = export.locator(".ytick text").all_text_contents()
    for hostile in HOSTILE_STRINGS:
        assert hostile in _as_text(labels), (hostile, labels)
    assert any(t.startswith("'<' (") for t in ticks), ticks
    for selector in ("img[src='x']", "[onerror]", "a[href^='javascript']", "svg a", "tspan[style*='bold']"):
        assert export.locator(selector).count() == 0, selector
    export.close()


def test_every_hostile_string_is_literal_in_every_view_and_export(app_server, tmp_path):
    """Each string of the issue's list, typed as a prompt line, shows verbatim in the token chips, the
    heatmap's labels and hover, the query chips and the exported HTML and .npz; nothing runs."""
    with _browser(app_server) as (page, dialogs):
        page.locator("#prompt textarea").fill("\n".join(HOSTILE_STRINGS))
        page.locator("#generate").click()
        chips = _wait_done(page, 40)
        labels = page.evaluate(HEATMAP_TOKENS, "#heatmap .js-plotly-plot")
        assert labels == chips
        attn_chips = page.locator("#attn-chips .token .text").all_text_contents()
        assert attn_chips[:-1] == chips[:-1] and attn_chips[-1] == f"[{chips[-1]}]"  # the last token is the query
        for hostile in HOSTILE_STRINGS:
            assert hostile in _as_text(chips), (hostile, chips)
            start = _token_start(chips, hostile)
            hover = _hover_cell(page, start + 1, start, len(chips))
            expected = rf"query '{re.escape(chips[start + 1])}' \({start + 1}\) → key '{re.escape(chips[start])}' \({start}\): \d\.\d{{3}}"
            assert re.fullmatch(expected, hover), (hostile, hover)
        # the head grid draws no token text at all, so none can leak into it
        assert not [t for t in page.locator("#grid svg text").all_text_contents() if set(t) & set("<>${}")]
        _assert_inert(page, dialogs)

        page.locator("#export").click()
        links = page.locator("#exports a[href]")
        expect(links).to_have_count(2, timeout=WAIT_MS)
        hrefs = {
            Path(a.get_attribute("download") or a.inner_text()).suffix: a.get_attribute("href") for a in links.all()
        }
        html_path = tmp_path / "heatmap.html"
        html_path.write_bytes(page.request.get(hrefs[".html"]).body())
        npz_bytes = page.request.get(hrefs[".npz"]).body()
        _assert_export_is_literal(page, html_path, npz_bytes, chips)
        _assert_inert(page, dialogs)
