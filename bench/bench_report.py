"""flor report at scale: 1,000 runs x 10 names (issue 11).

Targets:

* the HTML file of 1,000 runs x 10 names (a value per epoch, 20 epochs)   < 10 MB
* it renders in headless Chromium (navigation start to the first frame after the
  page's script has drawn the table and every chart: ``data-rendered-ms``) < 3 s

Also reported, without a target: the wall time of ``flor report`` itself (against the
warm no-change ``flor log``, the cost every read command pays).

The runs are synthetic (notes written through ``Git.append_notes`` on real shadow
commits, as in bench_query.py), two code versions, four lr values x three batch sizes.
``BENCH_REPORT_RUNS=50 python bench/bench_report.py`` runs it small.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path

from harness import FLOR, QUIET_ENV, Report, cleanup, fixture, fmt_seconds, make_repo, \
    measure, temp_dir

RUNS = int(os.environ.get("BENCH_REPORT_RUNS", "1000"))
NAMES = [f"metric_{i}" for i in range(8)] + ["val_acc", "val_loss"]
EPOCHS = 20
BATCH = 100  # notes per notes commit while building
CHROMIUM = "/usr/bin/chromium"


def build_runs(repo: Path, runs: int) -> None:
    """``runs`` shadow commits with notes: 10 names a value per epoch, args lr and batch."""
    import pygit2

    from flor_cli.storage import notes
    from flor_cli.storage.git import SHADOW_REF, Git

    g = Git(repo)
    sig = pygit2.Signature("bench", "bench@localhost")
    first = g.repo.revparse_single("HEAD").peel(pygit2.Tree)
    blob = g.repo.create_blob(fixture("train.py") + "# version 2\n")
    builder = g.repo.TreeBuilder(first)
    builder.insert("train.py", blob, pygit2.GIT_FILEMODE_BLOB)
    trees = [first.id, builder.write()]
    parent, pending = None, {}
    start = time.time() - runs * 60.0
    for i in range(runs):
        rng = random.Random(i)
        run = time.strftime("%Y%m%d-%H%M%S", time.localtime(start + 60 * i)) + f"-{i:06x}"
        tree = trees[0] if i < runs // 2 else trees[1]
        commit = g.repo.create_commit(None, sig, sig, f"flor run {run}", tree,
                                      [parent] if parent else [])
        parent = commit
        lr, batch = rng.choice([1e-4, 3e-4, 1e-3, 3e-3]), rng.choice([32, 64, 128])
        records = [{"t": "arg", "s": 0, "n": "lr", "v": lr},
                   {"t": "arg", "s": 1, "n": "batch_size", "v": batch}]
        for epoch in range(EPOCHS):
            for k, name in enumerate(NAMES):
                value = (1 + k) * (1 - epoch / EPOCHS) * (1 + rng.random() * 0.1)
                records.append({"t": "log", "s": len(records), "n": name, "v": value,
                                "c": {"epoch": epoch}})
        header = {"run": run, "script": "train.py", "start": start + 60 * i, "status": "ok",
                  "end": start + 60 * i + 50, "branch": "main", "kwargs": {}, "argv": []}
        pending[str(commit)] = notes.render(header, records)
        if len(pending) == BATCH or i == runs - 1:
            g.append_notes(pending, f"bench: {len(pending)} runs")
            pending = {}
    if not g.cas_ref(SHADOW_REF, str(parent), None, "bench: synthetic runs"):
        raise SystemExit("could not create the shadow branch")


def render_ms(page_file: Path) -> float:
    """Milliseconds from navigation start to the page's first frame after drawing."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"])
        try:
            page = browser.new_page()
            page.goto(page_file.as_uri())
            page.wait_for_function("document.body.dataset.renderedMs", timeout=60_000)
            return float(page.evaluate("document.body.dataset.renderedMs"))
        finally:
            browser.close()


def main() -> None:
    report = Report(f"report: {RUNS:,} runs x {len(NAMES)} names x {EPOCHS} epochs")
    tmp = temp_dir("flor-bench-report-")
    try:
        repo = make_repo(tmp / "repo", {"train.py": fixture("train.py")})
        build_runs(repo, RUNS)
        log_wall, _ = measure([*FLOR, "log"], repo, QUIET_ENV)  # also builds the cache
        log_wall, _ = measure([*FLOR, "log"], repo, QUIET_ENV)
        out = tmp / "report.html"
        wall, cpu = measure([*FLOR, "report", "-o", str(out)], repo, QUIET_ENV)
        report.figure("flor report", f"{fmt_seconds(wall)} wall, {fmt_seconds(cpu)} CPU", None,
                      baseline=f"{wall / log_wall:.1f}x warm flor log ({fmt_seconds(log_wall)})")
        size = out.stat().st_size
        report.figure("report size", f"{size / 1e6:.2f} MB", size < 10e6, "< 10 MB")
        times = [render_ms(out) for _ in range(3)]
        best = min(times)
        report.figure("render in chromium", f"{best:.0f} ms (best of 3; "
                      f"{', '.join(f'{t:.0f}' for t in times)})", best < 3000, "< 3 s")
    finally:
        cleanup(tmp)
    report.exit()


if __name__ == "__main__":
    main()
