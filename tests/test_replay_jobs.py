"""``flor replay --jobs N``: runs replayed at once, workers forked from a fork server,
notes appended a batch of runs per commit.

A small pure-Python script whose outer loop naps ``SLOW x nap`` seconds per epoch (``nap``
a recorded arg, ``SLOW`` the replay's environment): recording is fast, and a replay can be
made slow for some runs only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import FLOR, flor, flor_json, git, make_repo
from test_replay import assert_clean, refs, show, values

SCRIPT = '''import os
import random
import time

import numpy

import flor

random.seed(flor.arg("seed", 0))
nap = flor.arg("nap", 0.0)
state = {"w": 0.0}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(3)):
        for step in flor.loop("step", range(3)):
            state["w"] += random.random()
        time.sleep(float(os.environ.get("SLOW", 0)) * nap)
        flor.log("w", state["w"])
'''


def today(script: str) -> str:
    """``script`` with a hindsight statement in its outer loop."""
    return script.replace('flor.log("w", state["w"])',
                          'flor.log("w", state["w"])\n        flor.log("w2", state["w"] * 2)')


def record(path: Path, naps: list[str]) -> Path:
    """Runs of SCRIPT, one per nap (seeds 0, 1, ...), and today's script in the worktree."""
    repo = make_repo(path, files={"train.py": SCRIPT})
    for k, nap in enumerate(naps):
        flor(repo, "run", "train.py", "--kwargs", f"nap={nap}", f"seed={k}")
    (repo / "train.py").write_text(today(SCRIPT))
    return repo


def notes_commits(repo: Path) -> int:
    return int(git(repo, "rev-list", "--count", "refs/notes/flor"))


def replayed(repo: Path) -> dict[str, tuple[dict, list]]:
    """Each run's replay header and the values it logged (what --jobs must not change)."""
    found = {}
    for row in flor_json(repo, "log"):
        note = show(repo, row["run"])
        (rp,) = note["replays"]
        found[row["run"]] = (rp, values(note, ["w2"], rp["rp"]))
    return found


@pytest.fixture(scope="module")
def four_runs(tmp_path_factory) -> Path:
    return record(tmp_path_factory.mktemp("jobs") / "repo", ["0", "0", "0", "0"])


def test_jobs_2_forked_equal_jobs_1_fresh_in_one_notes_commit(four_runs: Path,
                                                              tmp_path: Path) -> None:
    serial = shutil.copytree(four_runs, tmp_path / "serial", symlinks=True)
    parallel = shutil.copytree(four_runs, tmp_path / "parallel", symlinks=True)
    plans = {}
    for repo, args in ((serial, ["--jobs", "1", "--no-fork"]), (parallel, ["--jobs", "2"])):
        plans[repo] = json.loads(flor(repo, "replay", "w2", "--dry-run", "--format", "json",
                                      *args).stdout)
        before = notes_commits(repo)
        flor(repo, "replay", "w2", "--yes", *args)
        # four runs, one batch (two if the machine is so slow that 10 s pass between)
        assert notes_commits(repo) - before in (1, 2)
        assert_clean(repo)
    assert {row["start"] for row in plans[serial]} == {"fresh"}
    assert {row["start"] for row in plans[parallel]} == {"fork"}
    one, two = replayed(serial), replayed(parallel)
    assert one.keys() == two.keys() and len(one) == 4
    for run in one:
        assert two[run][1] == one[run][1] and len(one[run][1]) == 3
        assert one[run][0]["startup"]["how"] == "fresh"
        assert two[run][0]["startup"]["how"] == "fork" and two[run][0]["startup"]["imports_s"]
        same = ("names", "mode", "src", "workers", "restored", "status")
        assert {k: two[run][0][k] for k in same} == {k: one[run][0][k] for k in same}
    # what each run's workers paid before their first flor call: interpreter and imports
    assert sum(rp["startup"]["sec"] for rp, _ in two.values()) < \
        sum(rp["startup"]["sec"] for rp, _ in one.values())
    # the seeds differ, so the values do: each run replayed its own args
    assert len({tuple(v for *_, v in got) for _, got in one.values()}) == 4


def test_a_code_s_verifying_run_ends_before_its_other_runs_start(tmp_path: Path) -> None:
    v2 = SCRIPT.replace("state = {", "w0 = 0.0  # v2\nstate = {")
    repo = make_repo(tmp_path / "repo", files={"train.py": SCRIPT})
    for k in range(4):
        if k == 2:
            (repo / "train.py").write_text(v2)
            git(repo, "commit", "-qam", "v2")
        flor(repo, "run", "train.py", "--kwargs", f"seed={k}")
    (repo / "train.py").write_text(today(v2))
    plan = json.loads(flor(repo, "replay", "w2", "--dry-run", "--format", "json").stdout)
    version = {row["run"]: row["version"] for row in plan}
    flor(repo, "replay", "w2", "--yes", "--jobs", "2")
    by_version: dict[str, list[dict]] = {}
    for run, (rp, _) in replayed(repo).items():
        by_version.setdefault(version[run], []).append(rp)
    assert len(by_version) == 2
    verifiers = []
    for rps in by_version.values():
        (checker,) = [rp for rp in rps if "verify" in rp]
        verifiers.append(checker)
        assert checker["verify"]["ok"]
        (other,) = [rp for rp in rps if rp is not checker]
        assert other["start"] >= checker["end"]
    first, second = sorted(verifiers, key=lambda rp: rp["start"])
    assert second["start"] < first["end"]  # the two codes' verifying runs ran at once


def test_ctrl_c_with_jobs_appends_the_finished_runs_kills_the_rest(tmp_path: Path) -> None:
    repo = record(tmp_path / "repo", ["0", "1", "0"])
    runs = [row["run"] for row in sorted(flor_json(repo, "log"), key=lambda r: r["seed"])]
    before, commits = refs(repo), notes_commits(repo)
    proc = subprocess.Popen([*FLOR, "replay", "w2", "--yes", "--jobs", "2"], cwd=repo,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "SLOW": "5"})
    assert proc.stderr is not None
    ok = []
    deadline = time.time() + 60
    while len(ok) < 2 and time.time() < deadline:
        line = proc.stderr.readline()
        if line.startswith("replayed") and ": ok in" in line:
            ok.append(line.split()[1])
    assert sorted(ok) == sorted([runs[0], runs[2]])  # the slow one is still running
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    # the finished runs: in the commit made at Ctrl-C (run 0's before, if 10 s passed)
    assert refs(repo) != before and notes_commits(repo) - commits in (1, 2)
    assert [len(show(repo, run)["replays"]) for run in runs] == [1, 0, 1]
    assert_clean(repo)
    assert not list((repo / ".git" / "flor" / "replays").glob("*"))
    time.sleep(0.5)
    assert not [p for p in Path("/proc").glob("[0-9]*/cwd")
                if str(repo) in os.path.realpath(p)], "a worker outlived the replay"


@pytest.mark.parametrize("runs, seconds, batches", [(3, 600.0, [1, 3]), (64, 0.0, [1] * 4)])
def test_notes_commits_come_a_batch_of_runs_at_a_time(four_runs: Path, tmp_path: Path,
                                                      monkeypatch, runs: int, seconds: float,
                                                      batches: list[int]) -> None:
    """A batch ends at BATCH_RUNS runs or BATCH_SECONDS after its first run ended."""
    from flor_cli.services.replay import api, execute
    from flor_cli.storage.git import Git

    repo = shutil.copytree(four_runs, tmp_path / "repo", symlinks=True)
    monkeypatch.setattr(execute, "BATCH_RUNS", runs)
    monkeypatch.setattr(execute, "BATCH_SECONDS", seconds)
    monkeypatch.chdir(repo)
    g = Git(repo)
    before = notes_commits(repo)
    outcome = api.execute(g, api.plan(g, ["w2"], jobs=2))
    assert len(outcome.done) == 4 and not outcome.failed
    assert notes_commits(repo) == before + len(batches)
    messages = git(repo, "log", "--format=%s", f"-{len(batches)}", "refs/notes/flor")
    assert sorted(len(m.rsplit(": ", 1)[1].split()) for m in messages.splitlines()) == batches


def test_the_plan_asks_a_remote_store_only_about_runs_the_cache_lacks(
        four_runs: Path, tmp_path: Path, monkeypatch) -> None:
    """Objects in a remote store only (a fresh clone): the cache's availability, made
    with one listing, answers the plan; the remote is asked only about a run the cache
    counts objects missing for."""
    from flor_cli.services.replay import api
    from flor_cli.storage import cache
    from flor_cli.storage.git import Git
    from flor_cli.storage.objects import Remote, configured_store

    repo = shutil.copytree(four_runs, tmp_path / "repo", symlinks=True)
    git(repo, "config", "flor.store", f"memory://flor-test-{os.getpid()}")
    g = Git(repo)
    store = configured_store(g)
    local = repo / ".git" / "flor" / "objects"
    sent, bad = store.upload(p.parent.name + p.name for p in local.glob("*/*"))
    assert sent and not bad
    shutil.rmtree(local)
    with cache.connection(g) as db:  # the stores changed: every run checked again
        assert db.execute("SELECT sum(missing) FROM availability").fetchone() == (0,)
    asked: list[str] = []
    real_has = Remote.has
    monkeypatch.setattr(Remote, "has", lambda self, sha: asked.append(sha) or real_has(self, sha))
    plan = api.plan(g, ["w2"])
    assert asked == [] and all(job.ckpts and not job.missing_ckpts for job in plan.runnable)
    with cache.connection(g) as db:
        (run,) = db.execute("SELECT run FROM availability LIMIT 1").fetchone()
        db.execute("UPDATE availability SET missing = 1 WHERE run = ?", (run,))
        db.commit()
    plan = api.plan(g, ["w2"])
    (job,) = [j for j in plan.runnable if j.run == run]
    assert len(asked) == sum(len(c["objs"]) for c in job.ckpts) > 0


def test_default_jobs_fill_the_cores_without_oversubscribing(monkeypatch) -> None:
    from flor_cli.services.replay.plan import default_jobs

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert [default_jobs(w) for w in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


def test_preimports_take_installed_packages_never_the_user_s_modules(tmp_path: Path) -> None:
    from flor_cli.services.replay.forks import preimports

    (tmp_path / "helper.py").write_text("print('side effect')\n")
    (tmp_path / "json").mkdir()  # shadows the standard library's json here
    source = ("import os, numpy as np\nimport helper\nimport json\nfrom email import utils\n"
              "from . import sibling\nimport flor\nif True:\n    import csv\n"
              "def f():\n    import shutil\nimport not_installed_anywhere\n")
    assert preimports(source, tmp_path, [tmp_path]) == ["os", "numpy", "email"]
    import email

    assert preimports("import email\n", tmp_path, [Path(email.__file__).parent]) == []


LAZY = '''import sys

import flor

total = {"n": 0.0}
with flor.checkpointing(total=total):
    for epoch in flor.loop("epoch", range(2)):
        flor.log("n", total["n"])
        import colorsys  # imported lazily: not a top-level import the server can see
        for step in flor.loop("step", range(2)):
            total["n"] += colorsys.rgb_to_hsv(0.2, 0.4, 0.4)[0]
'''


def test_a_slot_s_server_imports_what_its_workers_imported_lazily(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files={"train.py": LAZY})
    for _ in range(3):
        flor(repo, "run", "train.py")
    (repo / "train.py").write_text(LAZY.replace(
        "        import colorsys", '        flor.log("warm", "colorsys" in sys.modules)\n'
                                  "        import colorsys"))
    flor(repo, "replay", "warm", "--yes", "--jobs", "1")
    warm = []
    for row in flor_json(repo, "log"):
        note = show(repo, row["run"])
        warm.append([v for *_, v in values(note, ["warm"], note["replays"][0]["rp"])])
    assert sorted(warm) == [[False, True], [True, True], [True, True]]  # the first taught it


def test_the_plan_s_time_is_its_runs_shared_among_the_slots() -> None:
    from flor_cli.services.replay.plan import Job, Plan

    runs = [Job(f"r{k}", "c", est=10.0) for k in range(3)]
    assert Plan(["x"], 1, None, runs, parallel=2).seconds == 15.0  # type: ignore[arg-type]
    assert Plan(["x"], 1, None, runs[:1], parallel=2).seconds == 10.0  # type: ignore[arg-type]


def test_an_import_that_starts_a_thread_means_fresh_interpreters(tmp_path: Path) -> None:
    site = tmp_path / "site"  # an installed package whose import starts a thread
    site.mkdir()
    (site / "busy.py").write_text("import threading, time\n"
                                  "threading.Thread(target=time.sleep, args=(30,), daemon=True,"
                                  " name='busy-pool').start()\n")
    script = "import busy\n\n" + LAZY
    repo = make_repo(tmp_path / "repo", files={"train.py": script})
    env = {"PYTHONPATH": str(site)}
    flor(repo, "run", "train.py", env=env)
    (repo / "train.py").write_text(script.replace('flor.log("n", total["n"])',
                                                  'flor.log("n", total["n"])\n'
                                                  '        flor.log("n2", total["n"] * 2)'))
    flor(repo, "replay", "n2", "--yes", env=env)
    ((row,),) = [flor_json(repo, "log")]
    (rp,) = show(repo, row["run"])["replays"]
    assert rp["startup"]["how"] == "fresh" and "busy-pool" in rp["startup"]["why"]
    assert len(values(show(repo, row["run"]), ["n2"], rp["rp"])) == 2


def test_on_ray_the_plan_says_its_workers_are_ray_tasks(four_runs: Path) -> None:
    """With `git config flor.ray` set, the workers will be Ray tasks, not forks (and no
    fork server is started); --no-ray plans local workers again. A dry run connects to
    nothing, so no Ray is needed here."""
    def starts(*args: str) -> set[str]:
        plan = flor(four_runs, "replay", "w2", "--dry-run", "--format", "json", *args).stdout
        return {row["start"] for row in json.loads(plan)}

    git(four_runs, "config", "flor.ray", "127.0.0.1:1")
    try:
        assert starts() == {"ray"} and starts("--no-ray") == {"fork"}
    finally:
        git(four_runs, "config", "--unset", "flor.ray")


def test_when_a_code_s_verifying_run_fails_the_next_run_of_that_code_verifies(
        tmp_path: Path) -> None:
    """The verification is the one check that skipping nested loops gives a full
    re-run's values; a verifying run that fails must not leave its code's other runs
    to skip unchecked."""
    repo = record(tmp_path / "repo", ["0", "0", "0"])
    plan = json.loads(flor(repo, "replay", "w2", "--dry-run", "--format", "json").stdout)
    seeds = {row["run"]: row["seed"] for row in flor_json(repo, "log")}
    verifier = seeds[plan[0]["run"]]  # the first run of the code verifies it
    (repo / "train.py").write_text(today(SCRIPT).replace(
        'state["w"] * 2)', f'state["w"] * 2 / (flor.arg("seed", 0) - {verifier}))'))
    proc = flor(repo, "replay", "w2", "--yes", "--jobs", "1", check=False)
    assert proc.returncode == 1 and "ZeroDivisionError" in proc.stderr, proc.stderr
    headers = [show(repo, run)["replays"] for run in seeds if seeds[run] != verifier]
    verified = [rps[0]["verify"] for rps in headers if rps and "verify" in rps[0]]
    assert len(verified) == 1 and verified[0]["ok"], headers


def test_a_failed_verifying_run_passes_its_check_past_a_run_with_nothing_to_check() -> None:
    """The next run of the code may have no checkpoint it can restore (thinned out or its
    objects gone: it re-executes, and has nothing to verify); the check goes on to the
    first run that restores, or the code's later runs would skip unchecked."""
    from flor_cli.services.replay.execute import Scheduler
    from flor_cli.services.replay.plan import Job, Plan

    ckpt = {"t": "ckpt", "c": {"epoch": 0}, "objs": {}}
    failed, bare, restoring = (Job(run, "c" * 40, script="train.py", source="code",
                                   mode="skip", epochs=2, ckpts=ckpts)
                               for run, ckpts in (("a", [ckpt]), ("b", []), ("c", [ckpt])))
    failed.check = [0, None]
    scheduler = Scheduler(None, Plan(["w"], 1, None, [bare, restoring]),  # type: ignore[arg-type]
                          None, None, None)  # type: ignore[arg-type]
    scheduler._verify_next(failed)
    assert bare.check is None and restoring.check == [0, None]
    assert scheduler.verifying == {("train.py", "code"): restoring}
