"""Make the README's screenshots: `python scripts/screenshots.py` (needs Debian's chromium and playwright).

Starts the app on a free local port, opens it in headless Chromium and writes, in docs/screenshots/:
desktop.png (1440×900: the repeated example, the induction head L1 H0, a token of the repeat as the
query), phone.png (390×844: the same view, scrolled to the heatmap) and lab.png (the lab's ablation
of L0 H0). Run it on purpose after a visible change; the tests never write these files.
"""

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPEATED = "sword crown honey winter tongue lamb night castle bread river. " * 2
WAIT_MS = 120_000


def start_app() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the app did not start")


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
    proc, url = start_app()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            for name, viewport in (
                ("desktop", {"width": 1440, "height": 900}),
                ("phone", {"width": 390, "height": 844}),
            ):
                phone = name == "phone"
                page = browser.new_context(viewport=viewport, is_mobile=phone, has_touch=phone).new_page()
                page.goto(url, wait_until="load", timeout=WAIT_MS)
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
    finally:
        proc.terminate()
    print(f"wrote {', '.join(sorted(p.name for p in OUT.glob('*.png')))} in {OUT}")


if __name__ == "__main__":
    main()
