"""Make the README's screenshots: `python scripts/screenshots.py` (needs Debian's chromium and playwright).

Starts the app on a free local port, opens it in headless Chromium and writes, in docs/screenshots/:
desktop.png (1440×900: the repeated example, the induction head L1 H0, a token of the repeat as the
query), phone.png (390×844: the same view, scrolled to the heatmap) and lab.png (the lab's ablation
of L0 H0). Run it on purpose after a visible change; the tests never write these files.
"""

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP, PHONE, running_app  # noqa: E402 - the tests' browser setup

OUT = ROOT / "docs" / "screenshots"
REPEATED = "sword crown honey winter tongue lamb night castle bread river. " * 2
WAIT_MS = 120_000


def show_induction(page) -> None:
    """Generate on the repeated example, open L1 H0 and make a token of the repeat the query."""
    page.locator("#prompt textarea").fill(REPEATED.strip())
    page.locator("#generate").click()
    page.wait_for_function("() => document.querySelector('#status textarea').value.includes('Done')", timeout=WAIT_MS)
    page.locator("#head input").click()
    page.get_by_role("option", name="L1 H0").first.click()
    expect(page.locator("#heatmap label")).to_contain_text("L1 H0", timeout=WAIT_MS)
    page.locator("#chips .token").nth(15).click()
    page.wait_for_function(
        "() => document.querySelector('#status textarea').value.startsWith('Query: token 15')", timeout=WAIT_MS
    )
    page.wait_for_timeout(1000)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as log_dir, running_app(Path(log_dir)) as app, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            phone = name == "phone"
            page = browser.new_context(viewport=viewport, is_mobile=phone, has_touch=phone).new_page()
            page.goto(app.url, wait_until="load", timeout=WAIT_MS)
            show_induction(page)
            if phone:
                page.locator("#tabs").scroll_into_view_if_needed()
                page.evaluate(
                    "() => window.scrollBy(0, document.querySelector('#tabs').getBoundingClientRect().top - 4)"
                )
                page.wait_for_timeout(500)
            page.screenshot(path=str(OUT / f"{name}.png"))
            if not phone:
                page.get_by_role("tab", name="Lab", exact=True).click()
                page.get_by_role("button", name="Ablate L0 H0").click()
                page.wait_for_function(
                    "() => document.querySelector('#lab-status textarea').value.includes('L0H0')", timeout=WAIT_MS
                )
                page.get_by_role("tab", name="Ablation", exact=True).click()
                page.wait_for_timeout(1500)
                page.screenshot(path=str(OUT / "lab.png"))
            page.context.close()
        browser.close()
    print(f"wrote {', '.join(sorted(p.name for p in OUT.glob('*.png')))} in {OUT}")


if __name__ == "__main__":
    main()
