"""Big untracked files: left out of the snapshot, listed in the note, linked in on replay."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import flor, git, make_repo

SCRIPT = """\
import os
import flor
size = os.path.getsize("data/big.bin")
for epoch in flor.loop("epoch", range(2)):
    flor.log("loss", epoch)
"""


def test_big_untracked_file_is_left_out_listed_and_linked_on_replay(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files={"train.py": SCRIPT, "data/README": "data\n"})
    big = repo / "data" / "big.bin"
    with open(big, "wb") as f:  # sparse: 1 GiB in no time and no disk
        f.truncate(2**30)
    (repo / "small.txt").write_text("kept\n")

    proc = flor(repo, "run", "train.py")
    assert proc.stderr.splitlines()[0] == (
        "flor: left out of the snapshot (untracked, over 50.0 MiB, see git config "
        "flor.maxFileSize): data/big.bin (1.0 GiB)")
    tree = git(repo, "ls-tree", "-r", "--name-only", "flor.shadow").split()
    assert "small.txt" in tree and "data/big.bin" not in tree
    note = git(repo, "notes", "--ref=flor", "show", "flor.shadow")
    header = json.loads(next(l for l in note.splitlines() if l.startswith('{"t":"run"')))
    (entry,) = header["big"]
    assert entry["path"] == "data/big.bin" and entry["size"] == 2**30
    assert entry["mtime"] == os.stat(big).st_mtime
    assert entry["hash"].startswith("sample-sha256:")

    with open(big, "ab") as f:  # the data changed since the run
        f.write(b"more")
    (repo / "train.py").write_text(SCRIPT + 'flor.log("size", size)\n')
    git(repo, "commit", "-qam", "log the size")
    proc = flor(repo, "replay", "size", "--yes", "--format", "json")
    assert "flor: warning: data/big.bin changed since the run was recorded" in proc.stderr
    assert f'"size": {2**30 + 4}' in proc.stdout  # the new values, read through the link


def test_threshold_is_configurable(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files={"t.py": "import flor\nflor.log('x', 1)\n"})
    (repo / "two.bin").write_bytes(b"x" * 2048)
    git(repo, "config", "flor.maxFileSize", "1k")
    proc = flor(repo, "run", "t.py")
    assert "two.bin (2.0 KiB)" in proc.stderr
    assert "two.bin" not in git(repo, "ls-tree", "-r", "--name-only", "flor.shadow")
    assert "left out" not in flor(repo, "run", "t.py").stderr  # said once per file
    (repo / "two.bin").write_bytes(b"y" * 4096)  # a new version: said again
    assert "two.bin (4.0 KiB)" in flor(repo, "run", "t.py").stderr
    git(repo, "config", "flor.maxFileSize", "0")  # no limit
    assert "left out" not in flor(repo, "run", "t.py").stderr
    git(repo, "config", "flor.maxFileSize", "lots")
    proc = flor(repo, "run", "t.py", check=False)
    assert proc.returncode == 2
    assert proc.stderr == ("flor: flor.maxFileSize = 'lots': not a size (bytes, or with "
                           "k, m or g)\n")


def test_sizes_are_written_one_way_everywhere() -> None:
    """flor gc wrote KiB and the big-file notice KB (both for 1024 bytes), and the fold
    MB: one formatter now, binary units named as such."""
    from flor_cli.services import gc
    from flor_cli.sizes import size_text
    from flor_cli.storage import bigfiles

    assert [size_text(n) for n in (0, 1023, 1024, 1536, 50 * 2**20, 2**30, 3 * 2**40)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "50.0 MiB", "1.0 GiB", "3.0 TiB"]
    assert gc.size_text is bigfiles.size_text is size_text
