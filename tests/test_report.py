"""flor report: one self-contained HTML page, opened in headless Chromium (the Debian
`chromium` that `make install` installs, driven by Playwright; no browser is downloaded).

One recorded repo for the module: two runs of fixtures/scripts/curves.py on two code
versions, the second with an arg that is HTML (it must show as text), and a replay's
records appended to one of them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import append_replayed, fixture_script, flor, git, make_repo

from flor_cli.services import report
from flor_cli.storage.git import Git

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOSTILE = "</script><img src=x onerror=console.error(1)>"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("report") / "repo",
                     files={"train.py": fixture_script("curves.py")})
    flor(repo, "run", "train.py", "--kwargs", "lr=0.1")
    (repo / "train.py").write_text(fixture_script("curves.py") + "# version 2\n")
    git(repo, "commit", "-qam", "version 2")
    flor(repo, "run", "train.py", "--kwargs", "lr=0.2", f"opt={HOSTILE}")
    append_replayed(repo, 1, "w", [0.5, 0.4, 0.3])
    return repo


@pytest.fixture(scope="module")
def page_file(recorded: Path) -> Path:
    out = recorded.parent / "report.html"
    flor(recorded, "report", "-o", str(out))
    return out


def test_the_page_is_self_contained_and_holds_everything(recorded, page_file):
    html = page_file.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing to fetch
    data = report.build(Git(recorded))
    assert len(data["rows"]) == 2
    assert [p["name"] for p in data["panels"]] == ["acc", "final", "loss", "w"]
    assert len(data["images"]["shown"]) == 6
    first, second = data["versions"]
    assert len(first["runs"]) == len(second["runs"]) == 1
    assert "+# version 2" in second["diff"]
    (w,) = [p for p in data["panels"] if p["name"] == "w"]
    assert w["series"][0]["label"].endswith("(replayed)")
    assert HOSTILE not in html  # "</" is escaped inside the page's data


def test_chromium_renders_the_report(recorded, page_file, tmp_path):
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    fetched: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
            args=FLAGS[1:], viewport={"width": 1280, "height": 900})
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: fetched.append(r.url))
            page.goto(page_file.as_uri())
            rows = page.locator("#runs-table tbody tr")
            assert rows.count() == 2
            charts = page.locator("#curves .chart")
            assert sorted(charts.evaluate_all("cs => cs.map(c => c.dataset.name)")) == [
                "acc", "final", "loss", "w"]
            assert page.locator("#curves .chart[data-name=w] .legend").inner_text().endswith(
                "(replayed)")
            assert page.locator("#finals .chart").count() == 8  # 4 names x (lr, opt)
            images = page.locator("#images img")
            assert images.count() == 6
            assert images.evaluate_all("is => is.every(i => i.complete && i.naturalWidth > 0)")
            assert HOSTILE in page.locator("#runs-table tbody").inner_text()

            page.click("#runs-table th:text-is('lr')")
            page.click("#runs-table th:text-is('lr')")  # descending
            first_run = rows.nth(0).get_attribute("data-run")
            other_run = rows.nth(1).get_attribute("data-run")
            assert "0.2" in rows.nth(0).inner_text()
            page.fill("#filter", first_run)
            assert [rows.nth(i).is_visible() for i in range(2)] == [True, False]
            assert page.locator("#count").inner_text() == "1 of 2 runs"
            hidden_line = page.locator(f'#curves polyline[data-run="{other_run}"]').first
            assert not hidden_line.is_visible()  # the charts follow the filter
            page.fill("#filter", "")
            assert rows.nth(1).is_visible()
            assert page.locator("#versions details").count() == 2
        finally:
            browser.close()
    assert errors == []
    assert {url.split(":")[0] for url in fetched} <= {"file", "data"}


def test_report_errors_are_one_line(recorded, tmp_path):
    proc = flor(recorded, "report", "-o", str(tmp_path / "no" / "such" / "r.html"), check=False)
    assert proc.returncode == 2 and "no such directory" in proc.stderr
    proc = flor(recorded, "report", "--where", "nope = 1", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert not (recorded / "report.html").exists()


def test_report_data_round_trips_through_the_page(page_file):
    html = page_file.read_text()
    payload = html.split('<script id="flor-data" type="application/json">')[1].split("</script>")[0]
    data = json.loads(payload)
    assert data["columns"][:2] == ["run", "time"] and "version" in data["columns"]
    assert any(HOSTILE in json.dumps(row) for row in data["rows"])


def test_diffs_past_the_page_budget_are_left_out(recorded, monkeypatch):
    monkeypatch.setattr(report, "MAX_DIFFS_CHARS", 0)
    first, second = report.build(Git(recorded))["versions"]
    assert "diff" not in second and second["diff_left_out"]
