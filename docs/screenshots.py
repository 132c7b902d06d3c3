"""Screenshots of a study's report pages for the README and docs, taken in headless Chromium.

    python docs/screenshots.py greentune-runs/quickstart            # into docs/img/
    python docs/screenshots.py STUDY_DIR --out /tmp/shots --full-page

Writes ``report.png`` and ``pareto.png`` (and ``parallel.png``, ``slices.png`` when the
study has those pages). Run ``greentune report STUDY_DIR`` first if the directory has no
``report.html``.

The pages are opened as the tests open them (tests/test_report_browser.py): over
``file://`` with every other request refused, so a screenshot shows what a user on an
air-gapped cluster sees, and a page that logs an error or asks the network for anything
fails the run instead of being captured half drawn.

Needs the ``playwright`` Python package (the ``dev`` extra) and a Chromium on disk
(Debian: ``apt-get install chromium``); it never downloads a browser.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

PAGES = ("report", "pareto", "parallel", "slices")
REQUIRED = ("report", "pareto")
DEFAULT_OUT = Path(__file__).resolve().parent / "img"


def find_chromium() -> str | None:
    """``GREENTUNE_CHROMIUM``, else a ``chromium`` on PATH, else Debian's path if present."""
    found = os.environ.get("GREENTUNE_CHROMIUM") or shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def wait_for_plot(page: Page) -> None:
    """Until plotly has laid the figure out and the browser has painted it (WebGL included)."""
    page.wait_for_function(
        "() => { const gd = document.querySelector('.js-plotly-plot');"
        " return gd && gd._fullLayout && gd._fullData && gd.querySelector('.main-svg'); }")
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def offline(page: Page, problems: list[str]) -> None:
    """Refuse every request that is not a local file, and note console errors, page errors and
    refused requests in ``problems``."""
    def route(route: Route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            problems.append(f"network request refused: {route.request.url}")
            route.abort()

    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.route("**/*", route)


def screenshot_pages(study_dir: Path, out: Path, chromium: str, width: int = 1200, height: int = 800,
                     full_page: bool = False) -> list[Path]:
    """Save a PNG of each report page in ``study_dir`` to ``out``; raises if a page misbehaves."""
    from playwright.sync_api import sync_playwright

    missing = [f"{name}.html" for name in REQUIRED if not (study_dir / f"{name}.html").is_file()]
    if missing:
        raise SystemExit(f"{study_dir}: {', '.join(missing)} missing; run `greentune report {study_dir}` first")
    if out.resolve() == study_dir.resolve():
        raise SystemExit("--out is the study directory: the screenshots would replace the report's own PNGs")
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        try:
            for name in PAGES:
                source = study_dir / f"{name}.html"
                if not source.is_file():
                    continue
                page = browser.new_page(viewport={"width": width, "height": height})
                problems: list[str] = []
                offline(page, problems)
                page.goto(source.resolve().as_uri())
                if name != "report":
                    wait_for_plot(page)
                if problems:
                    raise SystemExit(f"{source}: " + "; ".join(problems))
                target = out / f"{name}.png"
                page.screenshot(path=str(target), full_page=full_page)
                page.close()
                saved.append(target)
        finally:
            browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study_dir", type=Path, help="a study's output directory (with report.html)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where to write the PNGs (default {DEFAULT_OUT})")
    parser.add_argument("--chromium", default=find_chromium(), help="the Chromium binary (default: $GREENTUNE_CHROMIUM, "
                                                                  "`chromium` on PATH, /usr/bin/chromium)")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--full-page", action="store_true", help="the whole page, not just the first screen")
    args = parser.parse_args(argv)
    if not args.chromium:
        print("no Chromium found: apt-get install chromium, or pass --chromium", file=sys.stderr)
        return 2
    for path in screenshot_pages(args.study_dir, args.out, args.chromium, args.width, args.height, args.full_page):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
