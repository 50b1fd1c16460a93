"""The HTML report in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium; nothing downloaded) opens the file from disk,
with the network unused. No console errors; every chart drawn with a size and data
marks; the scorecards' numbers equal the records'; a screenshot written."""

from __future__ import annotations

import json
import os
import shutil
import statistics
from pathlib import Path

import pytest
from selenium import webdriver

from pets.report import write_report

from report_run import session_run

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
# on CI (.ci/run installs both) a missing browser is a failure, never a skip
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    run_dir = session_run(tmp_path_factory)
    (path,) = write_report(run_dir, ["html"])
    browser.get(path.as_uri())
    return browser, run_dir


def test_the_page_loads_without_console_errors(page):
    browser, _ = page
    assert browser.title == "PETs Sandbox benchmark report"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_every_chart_is_drawn_with_a_size_and_data_marks(page):
    browser, _ = page
    charts = browser.execute_script(
        """
        return Array.from(document.querySelectorAll('figure.chart')).map(function (f) {
          var svg = f.querySelector('svg');
          var box = svg.getBoundingClientRect();
          var marks = Array.from(svg.querySelectorAll('[id*="-data-"]')).map(function (g) {
            var b = g.getBBox();
            return [b.width, b.height, g.querySelectorAll('path, use').length];
          });
          return {key: f.dataset.chart, series: Number(f.dataset.marks),
                  width: box.width, height: box.height, marks: marks};
        });
        """
    )
    keys = {c["key"] for c in charts}
    assert {"multi_site_prevalence-pareto", "multi_site_prevalence-bytes"} <= keys
    assert "multi_site_prevalence-utility-0" in keys and "multi_site_prevalence-scaling" in keys
    for chart in charts:
        assert chart["width"] > 100 and chart["height"] > 100, chart["key"]
        assert len(chart["marks"]) >= chart["series"] > 0, chart["key"]
        for width, height, shapes in chart["marks"]:
            assert shapes > 0 and (width > 0 or height > 0), chart["key"]


def _expected(run_dir: Path) -> dict[tuple[str, str, int], dict[str, float]]:
    """Scorecard figures computed straight from records.jsonl: means over ok repeats,
    largest worst risk and claimed epsilon."""
    groups: dict[tuple[str, str, int], list[dict]] = {}
    for line in (run_dir / "records.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["status"] != "ok":
            continue
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        groups.setdefault((r["backend"], params, r["size"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        out[key] = {
            "accuracy": statistics.mean(r["accuracy"][r["accuracy"]["primary"]] for r in rs),
            "wall_s": statistics.mean(r["cost"]["wall_s"] for r in rs),
            "wan_s": statistics.mean(r["cost"]["network"]["wan"]["modelled_s"] for r in rs),
            "bytes": statistics.mean(r["cost"]["bytes_total"] for r in rs),
            "worst_risk": max(r["leakage"]["headline"]["worst_residual_risk"] for r in rs),
        }
        claimed = [r["leakage"]["headline"]["epsilon_claimed"] for r in rs]
        if claimed[0] is not None:
            out[key]["eps_claimed"] = max(claimed)
    return out


def test_scorecard_numbers_equal_the_records(page):
    browser, run_dir = page
    rows = browser.execute_script(
        """
        return Array.from(document.querySelectorAll('table.scorecard tbody tr')).map(function (tr) {
          var cells = {};
          tr.querySelectorAll('td[data-field]').forEach(function (td) {
            cells[td.dataset.field] = [td.dataset.value, td.innerText];
          });
          return {backend: tr.dataset.backend, params: tr.dataset.params,
                  size: Number(tr.dataset.size), cells: cells};
        });
        """
    )
    expected = _expected(run_dir)
    assert len(rows) == len(expected) == 4  # plaintext at two sizes, opendp at two epsilons
    for row in rows:
        want = expected[(row["backend"], row["params"], row["size"])]
        for field, value in want.items():
            raw, _ = row["cells"][field]
            assert float(raw) == pytest.approx(value, rel=1e-12), (row, field)
        accuracy_text = row["cells"]["accuracy"][1].splitlines()[0]
        assert accuracy_text == f"{want['accuracy']:.3g}"


def test_a_screenshot_is_written(page, tmp_path):
    browser, _ = page
    browser.set_window_size(1280, 2200)
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
