"""The report's pages in a real headless Chromium, with the network cut off.

A study's output directory is written the way a finished study leaves it (trials.csv and
study.json), loaded back with ``load_from_dir`` and reported with ``build_report``, as
``greentune report DIR`` does. Each page is then opened over file:// with every other
request refused, as on an air-gapped cluster: it must log no error, ask the network for
nothing and draw its plot. Plot pages are opened from a copy alone in an empty directory,
as one artifact downloaded from MLflow would be.

Needs the ``playwright`` package (``dev`` extra) and Chromium at /usr/bin/chromium or
``$GREENTUNE_CHROMIUM`` (``apt-get install chromium``; ``.ci/run`` installs it); skipped,
saying which is missing, without.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from tests.report_tables import SPACE, TUNABLE, synthetic_result
from tuner.config import config_dump
from tuner.reporting import build_report
from tuner.reporting.load import load_from_dir

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("GREENTUNE_CHROMIUM", "/usr/bin/chromium"))

try:
    from playwright.sync_api import Browser, Page, Route, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip("playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)
if not CHROMIUM.is_file():  # pragma: no cover - depends on the machine
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set GREENTUNE_CHROMIUM; "
                ".ci/run installs it)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, dict[str, Path]]:
    """(result, output directory, report files) of a 40-trial study: 2 failed, 2 stopped by budget."""
    made = synthetic_result()
    out = tmp_path_factory.mktemp("study")
    made.trials.to_csv(out / "trials.csv", index=False)
    (out / "study.json").write_text(json.dumps({
        "name": "synthetic", "mlflow_run_id": None, "total_energy_kwh": made.total_energy_kwh,
        "overhead_kwh": made.overhead_kwh, "config": config_dump(made.config)}, default=str))
    result = load_from_dir(out)
    return result, out, build_report(result, out)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


class OfflinePage:
    """A page that refuses every request but file:// and records what went wrong."""

    def __init__(self, browser: Browser) -> None:
        self.page: Page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.errors: list[str] = []
        self.refused: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.route("**/*", self._route)

    def _route(self, route: Route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            self.refused.append(route.request.url)
            route.abort()

    def open(self, path: Path) -> Page:
        self.page.goto(path.resolve().as_uri())
        return self.page

    def plot(self) -> dict[str, Any]:
        """Wait until plotly has drawn, then what it drew."""
        loaded = self.page.evaluate("() => typeof window.Plotly === 'object'")
        assert loaded, f"plotly.js did not load; refused: {self.refused}; errors: {self.errors}"
        self.page.wait_for_function(
            "() => { const gd = document.querySelector('.js-plotly-plot');"
            " return gd && gd._fullLayout && gd._fullData && gd.querySelector('.main-svg'); }", timeout=15000)
        self.page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
        return self.page.evaluate("""() => {
            const gd = document.querySelector('.js-plotly-plot');
            const texts = sel => [...gd.querySelectorAll(sel)].map(e => e.textContent);
            return {traces: gd._fullData.length, points: gd.querySelectorAll('.scatterlayer .point').length,
                    lines: gd.querySelectorAll('.scatterlayer .js-line').length,
                    legend: texts('.legendtext'), title: texts('.gtitle').join(' '),
                    headings: texts('.parcoords .axis-heading'), ticks: texts('.parcoords .tick text'),
                    canvases: gd.querySelectorAll('canvas.gl-canvas').length};
        }""")

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.refused == [], f"the page asked the network for {self.refused}"

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def offline(browser: Browser) -> Iterator[OfflinePage]:
    page = OfflinePage(browser)
    yield page
    page.close()


def alone(path: Path, tmp_path: Path) -> Path:
    """A copy of ``path`` in an empty directory: nothing beside it to load."""
    (tmp_path / "alone").mkdir()
    return Path(shutil.copy(path, tmp_path / "alone" / path.name))


def test_pareto_page_draws_every_trial_offline(study, offline: OfflinePage, tmp_path: Path):
    result, _, files = study
    offline.open(alone(files["pareto_html"], tmp_path))
    drawn = offline.plot()
    offline.assert_clean()
    # One marker per trial, plus the knee's star; the front is a line.
    assert drawn["points"] == len(result.trials) + 1
    assert drawn["lines"] >= 1
    counts = result.trials["status"].value_counts()
    for label, status in (("completed", "completed"), ("failed", "failed"), ("stopped by budget", "stopped_by_budget")):
        assert f"{label} ({counts[status]})" in drawn["legend"]
    assert f"knee (trial {result.knee()['trial_id']})" in drawn["legend"]


def test_slices_page_draws_each_parameter_against_both_objectives_offline(study, offline: OfflinePage,
                                                                         tmp_path: Path):
    result, _, files = study
    page = offline.open(alone(files["slices_html"], tmp_path))
    drawn = offline.plot()
    offline.assert_clean()
    with_metric = int(result.trials["accuracy"].notna().sum())
    # Per parameter: every trial with a metric on the left, every trial on the right.
    assert drawn["points"] == len(TUNABLE) * (with_metric + len(result.trials))  # no row for a fixed one
    assert sorted(drawn["legend"]) == ["completed", "failed", "stopped by budget"]
    assert "2 failed without accuracy" in drawn["title"]
    # The choice is drawn as categories, in the declared order; lr on a log axis.
    optimizer_row = 2 * list(TUNABLE).index("optimizer") + 1
    ticks = page.eval_on_selector_all(f"g.x{optimizer_row}tick text", "els => els.map(e => e.textContent)")
    assert ticks == SPACE["optimizer"]["values"]
    assert page.evaluate("() => document.querySelector('.js-plotly-plot')._fullLayout.xaxis.type") == "log"


def test_parallel_page_draws_its_lines_offline(study, offline: OfflinePage, tmp_path: Path):
    from PIL import Image

    result, _, files = study
    page = offline.open(alone(files["parallel_html"], tmp_path))
    drawn = offline.plot()
    offline.assert_clean()
    assert drawn["headings"] == ["lr (log)", "epochs", "width (log)", "optimizer", "accuracy", "energy kWh (log)"]
    assert {"adam", "sgd", "0.0001", "0.1"} <= set(drawn["ticks"])
    assert drawn["canvases"] == 3
    assert f"{len(result.completed)} completed trials" in drawn["title"]
    # The lines are WebGL: count coloured pixels between the first and the last axis (the
    # colour bar is right of the last), with the canvases shown and then hidden. Viridis
    # lines are coloured; the axes and labels, which stay, are grey.
    axes = page.eval_on_selector_all(".parcoords .y-axis", "els => els.map(e => e.getBoundingClientRect().x)")
    top = page.eval_on_selector(".parcoords .axis-extent-top", "e => e.getBoundingClientRect().bottom")
    bottom = page.eval_on_selector(".parcoords .axis-extent-bottom", "e => e.getBoundingClientRect().top")
    clip = {"x": min(axes) + 5, "y": top + 5, "width": max(axes) - min(axes) - 10, "height": bottom - top - 10}

    def coloured() -> int:
        hsv = np.asarray(Image.open(io.BytesIO(page.screenshot(clip=clip))).convert("HSV"))
        return int(((hsv[..., 1] > 80) & (hsv[..., 2] > 40)).sum())

    with_lines = coloured()
    page.evaluate("() => document.querySelectorAll('canvas').forEach(c => c.style.visibility = 'hidden')")
    without = coloured()
    assert with_lines - without > 0.01 * clip["width"] * clip["height"], (with_lines, without)


def test_report_page_loads_its_images_and_links_the_plots_offline(study, offline: OfflinePage):
    _, out, files = study
    page = offline.open(files["report"])
    offline.assert_clean()
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete && e.naturalWidth > 0])")
    assert {alt for alt, _ in images} == {"pareto", "sensitivity", "budget_curve", "progress"}
    assert all(loaded for _, loaded in images), images
    # Every link resolves to a file the report wrote, the three plot pages among them
    # (each drawn offline in the tests above).
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    assert hrefs and all(h.startswith("file://") for h in hrefs), hrefs
    linked = {Path(unquote(urlparse(h).path)) for h in hrefs}
    assert all(path.is_file() for path in linked), linked
    assert {files[k] for k in ("pareto_html", "parallel_html", "slices_html")} <= linked
    assert set(files.values()) - {files["report"]} <= linked  # and every other artifact
    # Following a link in the browser lands on a page that draws.
    page.get_by_role("link", name="Parallel coordinates", exact=True).click()
    page.wait_for_load_state()
    assert page.url == files["parallel_html"].resolve().as_uri()
    assert offline.plot()["traces"] == 1
    offline.assert_clean()


def test_screenshot_script_saves_each_page(study, tmp_path: Path):
    from PIL import Image

    _, out, _ = study
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "screenshots.py"), str(out), "--out", str(tmp_path),
                           "--chromium", str(CHROMIUM)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("report", "pareto", "parallel", "slices"):
        shot = Image.open(tmp_path / f"{name}.png")
        assert shot.size == (1200, 800)
        # Not a blank page: more than a handful of colours (None: more than 65536 of them).
        colours = shot.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 50, name
