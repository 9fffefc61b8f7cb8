"""The app in a real browser (Debian's Chromium through Playwright), at 1440×900 and at 390×844: the
answer to every click is on screen, Stop is honest, messages are whole, plots fit a phone, the dark
theme reaches the plots, the lab works, and hostile text shows as text in every view and export,
without a dialog, a page error or a console error. Prints the first-view time of a fresh page.

Skipped when /usr/bin/chromium or playwright is missing.
"""

import re
import time
from contextlib import contextmanager

import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP, HOSTILE_STRINGS, PHONE

from gpt2.tokenizer import get_tokenizer

pytestmark = pytest.mark.slow

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect

WAIT_MS = 120_000  # generous, for anything the server does: the test machine may be small and busy
HOVER_MS = 10_000
REPEATED = "sword crown honey winter tongue lamb night castle bread river. " * 2
HOVER_RE = re.compile(r"query '.*' \(\d+\) → key '.*' \(\d+\): \d\.\d{3}")
PLOTS = ("#heatmap", "#next-tokens", "#grid", "#scores", "#lab-loss", "#lab-lens", "#lab-direct", "#lab-sweep")
HEATMAP_IS = "(n) => { const p = document.querySelector('#heatmap .js-plotly-plot'); return !!(p && p.data && p.data[0] && p.data[0].type === 'heatmap' && p.data[0].y.length === n); }"


@contextmanager
def browser_page(url: str, viewport=DESKTOP, query: str = ""):
    """A fresh Chromium page on the app that fails the test on any dialog, page error or console
    error (the app makes no request that fails, favicon included, so any console error counts)."""
    errors, dialogs = [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            phone = viewport["width"] < 500
            context = browser.new_context(viewport=viewport, is_mobile=phone, has_touch=phone)
            page = context.new_page()
            page.on("console", lambda msg: msg.type == "error" and errors.append(f"{msg.text} at {msg.location}"))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(url + query, wait_until="load", timeout=WAIT_MS)
            expect(page.locator("#generate")).to_be_visible(timeout=WAIT_MS)
            yield page
        finally:
            browser.close()
    assert not dialogs, dialogs
    assert not errors, errors


def open_tab(page, name: str) -> None:
    """Click the tab `name`, which must be on screen: no tab hides in an overflow menu, phone included."""
    tab = page.get_by_role("tab", name=name, exact=True).first
    expect(tab).to_be_visible(timeout=WAIT_MS)  # a busy machine may draw the tab row late, never hide it
    tab.click()


def status(page):
    return page.locator("#status textarea")


TOKEN_CHIPS = "#chips .token:has(.text:not(.unlabeled))"  # not the ✂ marker before a cut


def chip_texts(page) -> list[str]:
    return page.locator(f"{TOKEN_CHIPS} .text").all_text_contents()


def text_length(page) -> int:
    """Tokens of the text shown: the chips, and those the ✂ marker says came before them (a text
    longer than the context)."""
    cut = re.match(r"✂ ([\d,]+) earlier", page.locator("#chips .textfield").inner_text())
    return len(chip_texts(page)) + (int(cut.group(1).replace(",", "")) if cut else 0)


def generate(page, prompt: str, max_tokens: int | None = None) -> list[str]:
    """Type `prompt`, generate, and wait until the views show the new text; return the chips."""
    page.locator("#prompt textarea").fill(prompt)
    if max_tokens is not None:
        set_max_tokens(page, max_tokens)
    page.locator("#generate").click()
    expect(status(page)).to_have_value(re.compile(r"Done: \d+ new tokens"), timeout=WAIT_MS)
    chips = chip_texts(page)
    page.wait_for_function(HEATMAP_IS, arg=len(chips), timeout=WAIT_MS)
    return chips


def set_max_tokens(page, value: int) -> None:
    """Open Sampling and set "Max new tokens" until its number box follows (the slider mounts late)."""
    number = page.locator("#max-new-tokens input[type=number]")
    if not number.is_visible():
        page.get_by_text("Sampling", exact=True).click()
    expect(number).to_be_visible(timeout=WAIT_MS)
    for _ in range(40):
        if number.input_value() != str(value):
            number.fill(str(value))
            number.press("Enter")
        page.wait_for_timeout(300)
        if number.input_value() == str(value):
            break
    expect(number).to_have_value(str(value), timeout=HOVER_MS)


def in_view(page, selector: str) -> bool:
    """Whether the element's box lies inside the viewport as it is now (no scrolling)."""
    box = page.locator(selector).first.bounding_box()
    viewport = page.viewport_size
    return (
        bool(box)
        and box["y"] >= 0
        and box["y"] + min(box["height"], 200) <= viewport["height"]
        and box["x"] + box["width"] <= viewport["width"] + 1
    )


def plot_area(page, plot: str) -> dict:
    area = page.locator(f"{plot} .nsewdrag").first
    area.scroll_into_view_if_needed()
    return area.bounding_box()


CELL_CENTER = """([query, key]) => {
    const gd = document.querySelector('#heatmap .js-plotly-plot'), layout = gd._fullLayout, box = gd.getBoundingClientRect();
    return [box.x + layout.xaxis._offset + layout.xaxis.l2p(key), box.y + layout.yaxis._offset + layout.yaxis.l2p(query)];
}"""


THUMBNAIL_CENTER = """([layer, head]) => {
    const gd = document.querySelector('#grid .js-plotly-plot'), layout = gd._fullLayout, box = gd.getBoundingClientRect();
    const cell = gd.layout.meta.cell;
    return [box.x + layout.xaxis._offset + layout.xaxis.l2p((head + 0.4) * cell), box.y + layout.yaxis._offset + layout.yaxis.l2p((layer + 0.7) * cell)];
}"""
SCORE_MAP_SHOWS = "(name) => { const gd = document.querySelector('#scores .js-plotly-plot'); return !!(gd && gd._fullData && gd._fullData[0]?.colorbar?.title?.text === name); }"


def hover_cell(page, query: int, key: int) -> str:
    """Hover the heatmap cell (query row, key column); return plotly's hover label."""
    page.locator("#heatmap .nsewdrag").first.scroll_into_view_if_needed()
    page.mouse.move(1, 1)
    expect(page.locator("#heatmap .hoverlayer .hovertext")).to_have_count(0, timeout=HOVER_MS)
    x, y = page.evaluate(CELL_CENTER, [query, key])
    page.mouse.move(x, y, steps=3)
    label = page.locator("#heatmap .hoverlayer .hovertext")
    expect(label).to_have_text(HOVER_RE, timeout=HOVER_MS)
    return label.text_content()


def assert_inert(page) -> None:
    """Nothing the hostile text could have made: no element, link, bold text or script."""
    for selector in ("img[src='x']", "[onerror]", "a[href^='javascript']", "b:has-text('bold')"):
        assert page.locator(selector).count() == 0, selector
    assert page.locator(", ".join(f"{p} svg tspan[style*='bold'], {p} svg a" for p in PLOTS)).count() == 0
    assert not page.evaluate("() => [...document.scripts].some(s => s.textContent.includes('alert('))")


def test_desktop_every_answer_is_in_view(app_server):
    with browser_page(app_server) as page:
        # a fresh page: Plotly came with the page, so the first heatmap follows generation closely
        page.locator("#prompt textarea").fill(REPEATED)
        set_max_tokens(page, 150)  # long enough to stream in several updates on a fast machine
        page.evaluate(
            "() => { window.__counts = []; window.__rec = setInterval(() => window.__counts.push(document.querySelectorAll('#chips .token .text:not(.unlabeled)').length), 5); }"
        )
        page.locator("#prompt textarea").press("Control+Enter")  # the keyboard generates too
        expect(status(page)).to_have_value(re.compile(r"^Done: 150 new tokens"), timeout=WAIT_MS)
        done = time.monotonic()
        chips = chip_texts(page)
        page.wait_for_function(HEATMAP_IS, arg=len(chips), timeout=WAIT_MS)
        print(f"\nfirst heatmap {time.monotonic() - done:.2f} s after generation ended, in a fresh page")
        counts = page.evaluate("() => { clearInterval(window.__rec); return [...new Set(window.__counts)]; }")
        assert len([c for c in counts if 0 < c < len(chips)]) >= 2, f"the text did not stream: {counts}"
        for selector in ("#chips", "#heatmap .nsewdrag", "#attn-chips", "#next-tokens"):
            assert in_view(page, selector), selector
        assert "Stop" in page.locator("#stop").inner_text() and page.locator("#stop").is_disabled()

        # hover a cell, then click a token: it is marked, its row outlined, its panels updated, in view
        hover = hover_cell(page, 12, 11)
        assert re.fullmatch(r"query '␣crown' \(12\) → key '␣sword' \(11\): \d\.\d{3}", hover), hover
        clicked = time.monotonic()
        page.locator(TOKEN_CHIPS).nth(12).click()
        expect(status(page)).to_have_value("Query: token 12 '␣crown'.", timeout=WAIT_MS)
        page.wait_for_function(
            "() => document.querySelector('#heatmap .js-plotly-plot').layout.shapes[0].y0 === 11.5", timeout=WAIT_MS
        )
        print(f"a token click redrew the query's views in {time.monotonic() - clicked:.2f} s")
        expect(page.locator("#attn-chips label")).to_have_text(re.compile("What token 12 attends to"), timeout=WAIT_MS)
        expect(page.locator("#next-tokens label")).to_have_text("Next token after position 12", timeout=WAIT_MS)
        query_chip = page.locator(TOKEN_CHIPS).nth(12)
        expect(query_chip).to_have_css("background-color", "rgba(228, 87, 86, 0.5)", timeout=WAIT_MS)
        row = page.evaluate("() => document.querySelector('#heatmap .js-plotly-plot').layout.shapes[0].y0")
        assert row == 11.5
        for selector in ("#chips", "#heatmap .nsewdrag", "#attn-chips", "#next-tokens"):
            assert in_view(page, selector), selector

        # a click on a heatmap row makes that token the query
        page.mouse.click(*page.evaluate(CELL_CENTER, [30, 2]))
        expect(status(page)).to_have_value(re.compile(r"^Query: token 30 "), timeout=WAIT_MS)

        # the induction head, picked in the grid and in the score map, opens everywhere
        open_tab(page, "All heads")
        page.locator("#tab-heads").get_by_label("induction").check()
        page.wait_for_function(SCORE_MAP_SHOWS, arg="induction", timeout=WAIT_MS)
        page.locator("#grid .nsewdrag").first.scroll_into_view_if_needed()
        page.mouse.click(*page.evaluate(THUMBNAIL_CENTER, [1, 0]))
        expect(page.locator("#head input")).to_have_value(re.compile(r"^L1 H0 · induction"), timeout=WAIT_MS)
        expect(page.locator("#heatmap label")).to_have_text(re.compile(r"Attention of L1 H0"), timeout=WAIT_MS)
        assert in_view(page, "#heatmap .nsewdrag")  # the click opened the head in the Attention tab
        open_tab(page, "All heads")
        box = plot_area(page, "#scores")
        page.mouse.click(box["x"] + box["width"] * 0.625, box["y"] + box["height"] * (4.5 / 6))  # L4 H2
        expect(page.locator("#head input")).to_have_value(re.compile(r"^L4 H2 "), timeout=WAIT_MS)
        shape = page.evaluate("() => document.querySelector('#scores .js-plotly-plot').layout.shapes[0]")
        assert (shape["x0"], shape["y0"]) == (1.5, 3.5)
        expect(page.locator("#heatmap label")).to_have_text(re.compile(r"Attention of L4 H2"), timeout=WAIT_MS)
        assert in_view(page, "#heatmap .nsewdrag")
        assert plot_area(page, "#heatmap")["width"] > 400  # redrawn at its width after the tab opened

        # Stop ends a long generation and says how far it got; meanwhile the old text's views are blank
        set_max_tokens(page, 1000)
        page.locator("#generate").click()
        expect(status(page)).to_have_value(re.compile("^Generating 1000 tokens"), timeout=WAIT_MS)
        expect(page.locator("#heatmap label")).to_have_text("Attention", timeout=WAIT_MS)
        assert page.evaluate("() => !document.querySelector('#heatmap .js-plotly-plot').data.length")
        expect(page.locator("#stop")).to_be_enabled(timeout=WAIT_MS)
        page.wait_for_function(
            "(n) => document.querySelectorAll('#chips .token .text:not(.unlabeled)').length > n",
            arg=len(chips) + 20,
            timeout=WAIT_MS,
        )
        page.locator("#stop").click()
        expect(status(page)).to_have_value(re.compile(r"^Stopped after \d+ new tokens\.$"), timeout=WAIT_MS)
        page.wait_for_timeout(1500)
        stopped_at = text_length(page)
        page.wait_for_timeout(2000)
        assert text_length(page) == stopped_at, "text kept streaming after Stop"
        said = int(re.search(r"after (\d+)", status(page).input_value()).group(1))
        prompt_chips = len(chips) - 150
        assert abs(said - (stopped_at - prompt_chips)) <= 2
        expect(page.locator("#stop")).to_be_disabled(timeout=WAIT_MS)


def test_long_messages_are_whole_and_long_prompts_are_cut_where_marked(app_server):
    with browser_page(app_server) as page:
        chips = generate(page, "word " * 400, max_tokens=4)
        box = status(page)
        message = box.input_value()
        assert "were cut" in message and message.endswith("or a head in the grid.")
        assert box.evaluate("(e) => e.scrollHeight <= e.clientHeight + 1"), "the status box cuts its message"
        assert not chips[0].startswith("✂")  # the marker is plain text, not a clickable chip
        assert page.locator("#chips .textfield").inner_text().startswith("✂")
        assert text_length(page) == len(get_tokenizer().encode("word " * 400)) + 4  # the marker counts the rest
        assert (
            len(chips) == 256
            and page.evaluate("() => document.querySelector('#heatmap .js-plotly-plot').data[0].y.length") == 256
        )
        page.locator(TOKEN_CHIPS).nth(255).click()
        expect(status(page)).to_have_value(re.compile(r"^Query: token 255 "), timeout=WAIT_MS)
        expect(page.locator("#next-tokens label")).to_have_text("Next token after position 255", timeout=WAIT_MS)


DOC_TOP = "(selector) => document.querySelector(selector).getBoundingClientRect().top + window.scrollY"


def test_phone_one_column_wide_plots(app_server):
    with browser_page(app_server, PHONE) as page:
        chips = generate(page, REPEATED)
        # the views come right after the tokens; the examples and settings after the views
        tops = {s: page.evaluate(DOC_TOP, s) for s in ("#chips", "#tabs", "#extras")}
        assert tops["#chips"] < tops["#tabs"] < tops["#extras"] and tops["#tabs"] < 1.2 * PHONE["height"], tops
        open_tab(page, "Lab")
        for tool in ("Tutorial", "Loss & lens", "Attribution", "Ablation", "Patching"):  # each one tap away
            assert page.get_by_role("tab", name=tool, exact=True).is_visible(), tool
        open_tab(page, "Attention")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
        assert plot_area(page, "#heatmap")["width"] >= 250
        assert page.locator(".modebar-container .modebar").count() == 0  # no toolbar over the titles
        assert page.evaluate("() => document.documentElement.scrollHeight") < 4000
        page.locator(TOKEN_CHIPS).nth(5).click()
        expect(status(page)).to_have_value(re.compile(r"^Query: token 5 "), timeout=WAIT_MS)
        page.locator("#next-tokens").scroll_into_view_if_needed()
        assert plot_area(page, "#next-tokens")["width"] >= 250
        open_tab(page, "All heads")
        assert plot_area(page, "#grid")["width"] >= 250
        assert len(chips) > 40


def test_dark_mode_reaches_the_plots(app_server):
    with browser_page(app_server, query="?__theme=dark") as page:
        generate(page, "ROMEO:", max_tokens=8)
        assert page.evaluate("() => document.body.classList.contains('dark')")
        fill = page.evaluate("() => getComputedStyle(document.querySelector('#heatmap .xtick text')).fill")
        red, green, blue = (int(v) for v in re.findall(r"\d+", fill)[:3])
        assert red + green + blue > 450, fill  # light text on the dark page
        paper = page.evaluate("() => getComputedStyle(document.querySelector('#heatmap .main-svg')).backgroundColor")
        assert paper in ("rgba(0, 0, 0, 0)", "transparent"), paper


HEATMAP_TOKENS = """(selector) => document.querySelector(selector).data[0].y.map((label) => {
    const text = new DOMParser().parseFromString(label, 'text/html').documentElement.textContent;
    return text.replace(/^'(.*)' \\(\\d+\\)$/s, '$1');
})"""


def as_text(visible_tokens: list[str]) -> str:
    return "".join(visible_tokens).replace("␣", " ").replace("↵", "\n")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_hostile_text_is_literal_in_every_view_and_the_lab(app_server, tmp_path, viewport):
    with browser_page(app_server, viewport) as page:
        chips = generate(page, "\n".join(HOSTILE_STRINGS), max_tokens=8)
        labels = page.evaluate(HEATMAP_TOKENS, "#heatmap .js-plotly-plot")
        assert labels == chips
        for hostile in HOSTILE_STRINGS:
            assert hostile in as_text(chips), hostile
        query_chips = page.locator("#attn-chips .token .text").all_text_contents()
        assert "<script>alert(1)</script>" in as_text(query_chips)
        assert_inert(page)

        # the lab's views, escaped too, and as wide as the screen allows
        open_tab(page, "Lab")
        open_tab(page, "Loss & lens")
        page.locator("#lab-loss-btn").click()
        expect(page.locator("#lab-lens label")).to_have_text(re.compile("Logit lens"), timeout=WAIT_MS)
        page.wait_for_function(
            "() => { const p = document.querySelector('#lab-lens .js-plotly-plot'); return p && p.data[0] && p.data[0].type === 'heatmap'; }",
            timeout=WAIT_MS,
        )
        hover_names = page.evaluate(
            "() => document.querySelector('#lab-loss .js-plotly-plot').data[0].customdata.map(c => Array.isArray(c) ? c[0] : c)"
        )
        decoded = page.evaluate(
            "(names) => names.map(n => new DOMParser().parseFromString(n, 'text/html').documentElement.textContent)",
            hover_names,
        )
        assert any("'<'" in name for name in decoded) and not any("&lt;" in name for name in decoded)
        assert plot_area(page, "#lab-lens")["width"] >= (250 if viewport is PHONE else 500)
        open_tab(page, "Attribution")
        page.locator("#lab-attr-btn").click()
        expect(page.locator("#lab-sweep label")).to_have_text(
            re.compile("Each head alone mean-ablated"), timeout=WAIT_MS
        )
        page.wait_for_function(
            "() => { const p = document.querySelector('#lab-sweep .js-plotly-plot'); return p && p._fullData && p._fullData[0].z.length === 6; }",
            timeout=WAIT_MS,
        )
        assert_inert(page)

        page.locator("#lab-export").click()
        links = page.locator("#lab-exports a[href]")
        # what the lab shows: loss and lens, attribution, the rest, the sweep and the rank, 3 files each
        expect(links).to_have_count(18, timeout=WAIT_MS)
        html_link = next(
            a.get_attribute("href")
            for a in links.all()
            if (a.get_attribute("download") or a.inner_text()).endswith("/loss.html")
            or (a.get_attribute("download") or a.inner_text()) == "loss.html"
        )
        page_path = tmp_path / "loss.html"
        page_path.write_bytes(page.request.get(html_link).body())
        export = page.context.new_page()
        export.goto(page_path.as_uri(), wait_until="load", timeout=WAIT_MS)
        export.wait_for_selector(".js-plotly-plot .xtick text", timeout=WAIT_MS)
        assert "<script>alert(1)</script>" in export.title()
        for selector in ("img[src='x']", "[onerror]", "a[href^='javascript']", "svg a", "tspan[style*='bold']"):
            assert export.locator(selector).count() == 0, selector
        export.close()


def test_the_induction_circuit_in_three_clicks(app_server):
    """The lab's tutorial: load the example, ablate layer 1 (the repeat's loss jumps), then L0 H0 (so
    does it, and layer 1's stripes vanish in the ablated run), then L4 H2 (nothing happens)."""
    with browser_page(app_server) as page:
        open_tab(page, "Lab")
        page.get_by_role("button", name="1. Load the example").click()
        expect(status(page)).to_have_value(re.compile(r"^Done: "), timeout=WAIT_MS)
        lab_status = page.locator("#lab-status textarea")
        rises = {}
        for button, heads in (("Ablate layer 1", "L1H0, L1H1"), ("Ablate L0 H0", "L0H0"), ("Ablate L4 H2", "L4H2")):
            page.get_by_role("button", name=button).click()
            expect(lab_status).to_have_value(
                re.compile(rf"^zero-ablated {heads}.*mean loss .* → .* nats$"), timeout=WAIT_MS
            )
            before, after = (
                float(v) for v in re.search(r"mean loss ([\d.]+) → ([\d.]+) nats", lab_status.input_value()).groups()
            )
            rises[button] = after - before
        assert rises["Ablate layer 1"] > 1.5 and rises["Ablate L0 H0"] > 1.5 and abs(rises["Ablate L4 H2"]) < 0.2, rises
        # the Attention tab shows the ablated run on request
        open_tab(page, "Attention")
        expect(page.locator("#run")).to_be_visible(timeout=WAIT_MS)


def test_one_warning_per_event_and_byte_tokens_named_on_hover(app_server):
    with browser_page(app_server) as page:
        # offline, gpt2 cannot load: one warning, once
        page.locator("#model input").click()
        page.get_by_role("option", name="gpt2", exact=True).click()
        expect(status(page)).to_have_value(re.compile("^⚠ cannot load 'gpt2'"), timeout=WAIT_MS)
        page.wait_for_timeout(1500)
        toasts = " ".join(page.locator(".toast-body").all_inner_texts())
        assert toasts.count("cannot load 'gpt2'") == 1, toasts
        # an emoji is several byte tokens: each chip shows its bytes, the hover names the character
        chips = generate(page, "I love 🍕", max_tokens=1)
        assert chips[2:5] == ["␣‹F0›‹9F›", "‹8D›", "‹95›"], chips
        titles = page.locator(TOKEN_CHIPS).evaluate_all("(els) => els.map((e) => e.title)")
        assert titles[2:5] == ["bytes of “🍕”"] * 3, titles


COMPOSITION_CELL = """([row, col]) => {
    const gd = document.querySelector('#composition .js-plotly-plot'), layout = gd._fullLayout, box = gd.getBoundingClientRect();
    return [box.x + layout.xaxis._offset + layout.xaxis.l2p(col), box.y + layout.yaxis._offset + layout.yaxis.l2p(row)];
}"""
ROLE_LABELS = "() => { const gd = document.querySelector('#scores .js-plotly-plot'); return gd && gd.data[0].text ? gd.data[0].text.map(r => r.map(t => t.split('<br>')[0])) : null; }"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_heads_explained_answers_in_view(app_server, viewport):
    """Before any prompt, All heads shows the model's own roles; the composition map opens a head's
    passport; a heatmap cell of an induction stripe says why the key wins, in view at both sizes."""
    with browser_page(app_server, viewport) as page:
        open_tab(page, "All heads")
        page.wait_for_function(f"() => ({ROLE_LABELS})() !== null", timeout=WAIT_MS)
        roles = page.evaluate(ROLE_LABELS)
        assert roles[0][0] == "previous-token" and roles[1] == ["induction"] * 4, roles

        open_tab(page, "Weights")
        page.wait_for_function(
            "() => !!document.querySelector('#composition .js-plotly-plot')?.data?.length", timeout=WAIT_MS
        )
        page.locator("#composition .nsewdrag").first.scroll_into_view_if_needed()
        page.mouse.click(*page.evaluate(COMPOSITION_CELL, [0, 4]))  # L0 H0 → L1 H0
        expect(page.locator("#card-md h3")).to_have_text("L1 H0 · induction", timeout=WAIT_MS)
        assert in_view(page, "#card-md h3")

        open_tab(page, "Attention")
        generate(page, REPEATED, max_tokens=2)
        page.locator("#head input").click()
        page.get_by_role("option", name=re.compile(r"^L1 H0 ")).first.click()
        expect(page.locator("#heatmap label")).to_contain_text("L1 H0", timeout=WAIT_MS)
        page.locator("#heatmap .nsewdrag").first.scroll_into_view_if_needed()
        page.mouse.click(*page.evaluate(CELL_CENTER, [15, 5]))  # ' tongue' (repeat) → ' lamb' (first copy)
        label = page.locator("#qk-parts label")
        expect(label).to_contain_text("query 15", timeout=WAIT_MS)
        assert "attends to key 5" in label.text_content() and "K-composition): L0 H0" in label.text_content()
        top_key_part = page.evaluate("() => document.querySelector('#qk-parts .js-plotly-plot').data[0].y[0]")
        assert top_key_part == "L0H0"  # the previous-token head is why the induction key wins
        assert in_view(page, "#qk-parts .nsewdrag")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_circuit_tab(app_server, viewport):
    """The tutorial's fourth step finds the induction circuit and brings the graph into view; the
    graph stays readable on a phone (it scrolls sideways in its box); a head node opens the head."""
    with browser_page(app_server, viewport) as page:
        generate(page, REPEATED, max_tokens=2)
        open_tab(page, "Lab")
        open_tab(page, "Tutorial")
        page.locator("#step-circuit").click()
        expect(page.locator("#lab-status textarea")).to_have_value(
            re.compile(r"^Circuit of this pair"), timeout=WAIT_MS
        )
        nodes = "() => document.querySelector('#circuit-graph .js-plotly-plot')?.data?.[0]?.text"
        page.wait_for_function(f"() => ({nodes})()?.includes('L0H0')", timeout=WAIT_MS)
        page.wait_for_timeout(600)  # the graph is scrolled into view once drawn
        assert in_view(page, "#circuit-graph .nsewdrag") or page.locator("#circuit-graph").bounding_box()["y"] < 60
        assert plot_area(page, "#circuit-graph")["width"] >= 280  # readable, phone included
        for box in ("#circuit-graph", "#circuit-curve", "#lab-export"):  # the graph scrolls in its own box
            right = page.locator(box).bounding_box()
            assert right["x"] + right["width"] <= viewport["width"] + 1, box
        names = page.evaluate(nodes)
        at = page.evaluate(
            """(i) => { const gd = document.querySelector('#circuit-graph .js-plotly-plot'), l = gd._fullLayout, b = gd.getBoundingClientRect();
            return [b.x + l.xaxis._offset + l.xaxis.l2p(gd.data[0].x[i]), b.y + l.yaxis._offset + l.yaxis.l2p(gd.data[0].y[i])]; }""",
            names.index("L0H0"),
        )
        page.mouse.click(*at)
        expect(page.locator("#heatmap label")).to_contain_text("L0 H0", timeout=WAIT_MS)
        page.wait_for_timeout(500)  # the map redrawn at its new size
        area = page.locator("#heatmap .nsewdrag").first.bounding_box()  # the head's map, on screen
        assert in_view(page, "#heatmap label") and area["y"] >= 0 and area["y"] + 300 <= viewport["height"]
