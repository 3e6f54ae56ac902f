"""Scripts written for FlorDB run unchanged: FlorDB 4's API and the older MTK / pyflor
spellings record through `flor run` and replay through `flor replay` (real processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import flor, git, make_repo

# FlorDB 4: flor.arg without a default, flor.iteration, set_ckpt_interval, restore.
FLORDB4 = """\
import flor
flor.set_ckpt_interval(5)
state = {"w": flor.arg("w0")}
flor.restore("ckpt.pth", state)
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(3)):
        for step in flor.loop("step", range(2)):
            state["w"] = state["w"] * 2 + step
        flor.log("w", state["w"])
for fold in range(2):
    with flor.iteration("fold", fold, None):
        flor.log("fold_w", state["w"] + fold)
"""

# FlorDB 2.x (MTK) and pyflor (flor.it, SkipBlock, flags).
MTK = """\
import flor
from flor import MTK as Flor
flor.flags.NAME = "demo"
state = {"w": flor.arg("w0", 1)}
Flor.checkpoints(state)
for epoch in Flor.loop(range(3)):
    for step in Flor.loop(range(2)):
        state["w"] = state["w"] * 2 + step
    flor.log("w", state["w"])
"""

PYFLOR = """\
import flor
flor.flags.REPLAY = False
w = flor.arg("w0", 1)
for epoch in flor.it(range(3)):
    if flor.SkipBlock.step_into("batchwise-loop"):
        for step in range(2):
            w = w * 2 + step
    flor.SkipBlock.end(w)
    flor.log("w", w)
"""


def _logged(repo: Path, name: str) -> list[tuple[dict, object]]:
    note = json.loads(flor(repo, "show", "latest", "--format", "json").stdout)
    return [(r.get("c", {}), r["v"]) for r in note["records"]
            if r.get("t") == "log" and r["n"] == name]


def _backfill(repo: Path, script: str, statement: str, name: str) -> list[tuple[dict, object]]:
    """Add ``statement`` at the end of the main loop's body, commit, replay ``name``."""
    lines = script.splitlines()
    at = max(i for i, line in enumerate(lines) if 'flor.log("w"' in line)
    indent = lines[at][:len(lines[at]) - len(lines[at].lstrip())]
    lines.insert(at + 1, indent + statement)
    (repo / "train.py").write_text("\n".join(lines) + "\n")
    git(repo, "commit", "-qam", f"log {name}")
    flor(repo, "replay", name, input="y\n")  # a piped `y` answers the question
    return _logged(repo, name)


def test_flordb4_script_records_and_replays(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"train.py": FLORDB4})
    flor(repo, "run", "train.py", "--kwargs", "w0=1")
    assert [v for _, v in _logged(repo, "w")] == [5, 21, 85]
    assert _logged(repo, "fold_w") == [({"fold": 0}, 85), ({"fold": 1}, 86)]
    replayed = _backfill(repo, FLORDB4, 'flor.log("half", state["w"] / 2)', "half")
    assert replayed == [({"epoch": 0}, 2.5), ({"epoch": 1}, 10.5), ({"epoch": 2}, 42.5)]


def test_mtk_and_pyflor_scripts_record_and_replay(tmp_path: Path) -> None:
    for script, key in ((MTK, 'state["w"]'), (PYFLOR, "w")):
        repo = make_repo(tmp_path / str(len(key)), files={"train.py": script})
        flor(repo, "run", "train.py")
        assert _logged(repo, "w") == [({"epoch": 0}, 5), ({"epoch": 1}, 21), ({"epoch": 2}, 85)]
        replayed = _backfill(repo, script, f'flor.log("twice", {key} * 2)', "twice")
        assert replayed == [({"epoch": 0}, 10), ({"epoch": 1}, 42), ({"epoch": 2}, 170)]


def test_dataframe_of_an_unknown_name_is_empty(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"train.py": MTK})
    flor(repo, "run", "train.py")
    probe = ("import flor\n"
             "print(len(flor.dataframe('nosuchname')), list(flor.dataframe('nosuchname').columns))\n"
             "frame = flor.dataframe('w', 'nope')\n"
             "print(len(frame), list(frame.columns), frame['nope'].isna().all())\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=repo, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out == ["0 ['run', 'nosuchname']", "3 ['run', 'epoch', 'w0', 'w', 'nope'] True"]
    replay = ("import flor\n"
              "flor.replay(apply_vars=['w'], where_clause='w0 = 99', yes=True)\n")
    proc = subprocess.run([sys.executable, "-c", replay], cwd=repo, capture_output=True,
                          text=True)
    assert "--where w0 = 99: no runs match" in proc.stderr  # FlorDB's keywords reached it


def test_replay_question_without_an_answer(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"train.py": PYFLOR})
    flor(repo, "run", "train.py")
    (repo / "train.py").write_text(PYFLOR + 'flor.log("end", w)\n')
    for answer, code, last in (("", 2, "flor: there is no terminal to ask on and nothing "
                                       "was piped in: pass --yes, or pipe the "
                                       "answer (echo y | ...)"),
                               ("n\n", 1, "flor: aborted")):
        proc = flor(repo, "replay", "end", input=answer, check=False)
        assert (proc.returncode, proc.stderr.strip().splitlines()[-1]) == (code, last)
