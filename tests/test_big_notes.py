"""Long runs: notes split into parts that merge and read as one; reads in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import git, make_repo
from synthetic import record_run, write_journal

from flor_cli.services import sync
from flor_cli.storage import cache
from flor_cli.storage import git as git_module
from flor_cli.storage.git import Git


def _logged(repo: Path) -> int:
    db = cache.connect(Git(repo))
    try:
        return db.execute("SELECT count(*) FROM logs").fetchone()[0]
    finally:
        db.close()


def test_a_long_note_is_split_into_parts_that_merge_and_read_as_one(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(git_module, "PART_BYTES", 2_000)
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    a = make_repo(tmp_path / "a", files={"train.py": "print(1)\n"})
    git(a, "remote", "add", "origin", str(remote))
    git(a, "push", "-q", "origin", "main")
    record_run(a, epochs=6, steps=20)  # 6 * 21 logs, ~13 KB of note
    logged = _logged(a)
    assert logged == 6 * 21 + 1
    listed = git(a, "ls-tree", "-r", "--name-only", "refs/notes/flor").split()
    assert len(listed) > 5 and len({name.split(".")[0] for name in listed}) == 1
    assert len(git(a, "notes", "--ref=flor", "list").splitlines()) == 1  # git: one note
    (annotated, text), = [(c, Git(a).read_note(c)) for c, _ in Git(a).iter_notes()]
    assert len(text.splitlines()) == 2 + logged and all(map(json.loads, text.splitlines()))

    sync.push(Git(a), "origin")
    b = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(remote), str(b))
    sync.pull(Git(b), "origin")
    assert _logged(b) == logged
    # Both clones add to the run's note (replays), then meet again through the remote.
    for clone, rp in ((a, "ra"), (b, "rb")):
        Git(clone).append_notes({annotated: "\n".join(json.dumps(
            {"t": "log", "rp": rp, "s": i, "n": "x", "v": i, "c": {}}) for i in range(60))},
            f"test: replay {rp}")
    sync.push(Git(a), "origin")
    sync.push(Git(b), "origin")  # merges A's replay part by part
    sync.pull(Git(a), "origin")
    assert Git(a).read_note(annotated) is not None
    texts = [sorted(Git(c).read_note(annotated).splitlines()) for c in (a, b)]
    assert texts[0] == texts[1] and len(texts[0]) == len(set(texts[0])) == 2 + logged + 120
    assert _logged(a) == _logged(b) == logged + 120


MEASURE = """
import resource, sys
from flor_cli.storage import cache, notes
from flor_cli.storage.git import Git
git = Git(sys.argv[1])
git.repo  # pygit2 loaded before the limit: what is measured is the sync
notes.STREAM_BYTES = int(sys.argv[2])
notes.BATCH_LINES = 2_000
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
with open("/proc/self/statm") as f:
    used = int(f.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + int(sys.argv[3]), hard))
db = cache.connect(git)
print(db.execute("SELECT count(*) FROM logs").fetchone()[0])
"""


def test_cache_sync_of_a_long_note_runs_in_bounded_memory(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"train.py": "print(1)\n"})
    record_run(repo, epochs=4, steps=20_000)  # 80,004 logs: ~7 MB of note
    headroom = str(48 << 20)

    def sync_under_limit(stream_bytes: int) -> subprocess.CompletedProcess:
        (repo / ".git" / "flor" / "cache.db").unlink(missing_ok=True)
        return subprocess.run([sys.executable, "-c", MEASURE, str(repo), str(stream_bytes),
                               headroom], capture_output=True, text=True)

    streamed = sync_under_limit(1 << 20)
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.split() == ["80005"]
    whole = sync_under_limit(1 << 40)  # the same note decoded whole does not fit (it
    assert whole.returncode != 0       # dies of it, by MemoryError or a C allocation)


FOLD = """
import json, resource, sys
from pathlib import Path
from flor_cli.storage import journal
from flor_cli.storage.git import Git
git, path = Git(sys.argv[1]), Path(sys.argv[2])
journal.load_fold(git)
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
with open("/proc/self/statm") as f:
    used = int(f.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + int(sys.argv[3]), hard))
if sys.argv[4] == "decode":  # what folding did before: every record as a Python object
    records = [json.loads(line) for line in open(path)]
else:
    print(journal.fold(git, path, {"status": "ok"}))
"""


def test_folding_a_long_journal_runs_in_bounded_memory(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"train.py": "print(1)\n"})
    run, path = write_journal(repo, epochs=4, steps=20_000)
    headroom = str(32 << 20)

    def fold_under_limit(how: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", FOLD, str(repo), str(path), headroom,
                               how], capture_output=True, text=True)

    assert fold_under_limit("decode").returncode != 0  # the records do not fit as objects
    folded = fold_under_limit("fold")
    assert folded.returncode == 0, folded.stderr
    assert not path.exists()
    assert _logged(repo) == 80_005
    text = Git(repo).read_note(folded.stdout.strip())
    assert text.startswith('{"t":"run"') and json.loads(text.splitlines()[0])["run"] == run
