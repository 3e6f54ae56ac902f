"""All of flor's git plumbing: one place that knows refs, notes trees and the git CLI.

Two tools, each where it is strongest:

* the git CLI for what must behave exactly like git (ignore rules, attributes and
  filters when snapshotting the worktree; atomic compare-and-swap of refs; worktrees;
  push and fetch with the user's credentials), every call through :func:`run_git`, and
* pygit2 for fast object access (reading thousands of notes, writing trees, the union
  merge of notes that ``flor pull`` does).

flor runs inside git hooks, where git exports ``GIT_DIR``, ``GIT_INDEX_FILE`` and more
for the hook's own use; every git process flor starts gets the environment without them
(:func:`no_git_env`, as pre-commit does), so it finds the repository from its directory.
A git command that fails raises :class:`GitError`, which is flor's fault (exit 3 with a
log) unless the caller knows better: a remote that cannot be reached is the user's
(:class:`RemoteError`).

Notes are written by flor itself, not by libgit2's ``create_note``: libgit2 writes a flat
notes tree, and git reads a flat tree of thousands of notes far slower than a fanned-out
one. flor writes ``ab/cdef...`` (git's own 2/38 fan-out) and reads any fan-out git wrote.

Nothing here touches the user's index, HEAD or branches: snapshots use a temporary index
and every ref flor moves lives under ``refs/heads/flor.shadow`` or ``refs/notes/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

from flor_cli.errors import NotARepo, UserError
from flor_cli.storage.locks import exclusive

SHADOW_REF = "refs/heads/flor.shadow"
NOTES_REF = "refs/notes/flor"
ZERO = "0" * 40
_BLOB = 0o100644
_TREE = 0o040000
_CAS_TRIES = 50
# what git update-ref says when another writer moved the ref or holds its lock
_CONTENTION = ("but expected", "already exists", "File exists", "is missing")


class GitError(Exception):
    """A git command flor ran failed. Not the user's doing unless a caller says so: flor
    chose the command and its arguments. Carries what the log needs to find out why."""

    def __init__(self, command: list[str], returncode: int, stderr: str):
        self.command, self.returncode, self.stderr = command, returncode, stderr
        lines = stderr.strip().splitlines()
        super().__init__(f"{' '.join(command)} exited {returncode}"
                         + (f": {lines[-1]}" if lines else ""))


class RemoteError(UserError):
    """A remote refused or could not be reached (URL, network, credentials): the user's
    to fix, shown as git's own last line."""


class HeadInfo(NamedTuple):
    branch: str | None  # None when HEAD is detached
    commit: str | None  # None in a repository with no commits yet


# What pre-commit's ``no_git_env`` keeps of the ``GIT_*`` variables: the user's config,
# credentials and transport settings, which a push or fetch needs. The rest (GIT_DIR,
# GIT_INDEX_FILE, GIT_WORK_TREE, ... exported into hooks) would point git elsewhere.
_KEPT_GIT_ENV = frozenset({
    "GIT_EXEC_PATH", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSL_CAINFO", "GIT_SSL_NO_VERIFY",
    "GIT_CONFIG_COUNT", "GIT_HTTP_PROXY_AUTHMETHOD", "GIT_ALLOW_PROTOCOL", "GIT_ASKPASS",
})


def no_git_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) without the ``GIT_*`` variables a hook inherits."""
    env = os.environ if env is None else env
    return {k: v for k, v in env.items()
            if not k.startswith("GIT_") or k in _KEPT_GIT_ENV
            or k.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))}


def run_git(args: Iterable[str], cwd: str | os.PathLike, *, env: dict[str, str] | None = None,
            input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """THE way flor runs git: ``git ARGS`` in ``cwd``, output captured as text, in
    :func:`no_git_env` plus ``env`` (variables flor sets itself, e.g. its own
    ``GIT_INDEX_FILE``). ``check``: a non-zero exit raises :class:`GitError`."""
    command = ["git", *args]
    proc = subprocess.run(command, cwd=cwd, env={**no_git_env(), **(env or {})}, input=input,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise GitError(command, proc.returncode, proc.stderr or proc.stdout)
    return proc


def _locate(start: str | os.PathLike) -> list[str]:
    """[worktree root, absolute git dir, common git dir (relative to ``start``)]: one
    ``git rev-parse`` for all three, since every git process costs milliseconds of
    ``flor run``'s start-up, when the script is not running yet."""
    proc = run_git(["rev-parse", "--show-toplevel", "--absolute-git-dir", "--git-common-dir"],
                   start, check=False)
    out = proc.stdout.splitlines()
    if proc.returncode != 0 or len(out) != 3:
        raise NotARepo(f"not a git repository: {os.path.abspath(start)}")
    return out


class Git:
    """A repository as flor sees it: its worktree root, its git dirs and flor's own dir."""

    def __init__(self, root: str | os.PathLike, _located: list[str] | None = None):
        where = Path(root).resolve()
        top, git_dir, common = _located or _locate(where)
        self.root = where if _located is None else Path(top).resolve()
        self.git_dir = Path(git_dir)
        common_dir = Path(common)
        # --git-common-dir is relative to where git ran: ``root`` itself unless located
        self.common_dir = (common_dir if common_dir.is_absolute() else where / common_dir).resolve()
        # Shared by every worktree of the repo, so replays in linked worktrees write
        # journals and checkpoints where the main checkout finds them.
        self.flor_dir = self.common_dir / "flor"
        self._repo = None

    @classmethod
    def discover(cls, start: str | os.PathLike = ".") -> "Git":
        return cls(start, _locate(start))

    @property
    def repo(self):
        """pygit2 is imported only by the commands that read objects, to keep start-up fast."""
        if self._repo is None:
            import pygit2

            self._repo = pygit2.Repository(str(self.git_dir))
        return self._repo

    # -- git CLI ---------------------------------------------------------------------

    def cli(self, *args: str, env: dict | None = None, input: str | None = None,
            check: bool = True, cwd: Path | None = None) -> str:
        """The output of ``git ARGS`` in the worktree (see :func:`run_git`)."""
        return run_git(args, cwd or self.root, env=env, input=input, check=check).stdout

    def head(self) -> HeadInfo:
        """Branch and commit of HEAD, from one ``git rev-parse``.

        ``--revs-only`` prints nothing for an unborn HEAD (instead of failing), so the
        symbolic name is asked for separately only in a repository with no commits yet.
        """
        out = self.cli("rev-parse", "--revs-only", "HEAD", "--symbolic-full-name", "HEAD",
                       check=False).split()
        if len(out) == 2:
            commit, name = out
        else:  # unborn: HEAD names a branch that has no commit yet
            commit, name = None, self.cli("symbolic-ref", "-q", "HEAD", check=False).strip()
        if name == "HEAD" or not name:
            return HeadInfo(None, commit)  # detached
        return HeadInfo(name.removeprefix("refs/heads/"), commit)

    def snapshot_tree(self, leave_out: Iterable[str] = ()) -> str:
        """The tree of the worktree as it is now, untracked-not-ignored files included
        but for ``leave_out`` (paths relative to the root: see :mod:`bigfiles`).

        Built in a copy of the user's index (its stat cache makes ``add -A`` cheap), so
        the real index is never written.
        """
        tmp_root = self.flor_dir / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        index = tmp_root / f"index-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            if (self.git_dir / "index").exists():
                shutil.copyfile(self.git_dir / "index", index)
            env = {"GIT_INDEX_FILE": str(index)}  # flor's own: kept, unlike a hook's
            self._unflag(env)
            self.cli("add", "-A", "--", ".", *(f":(exclude,literal,top){p}" for p in leave_out),
                     env=env)
            return self.cli("write-tree", env=env).strip()
        finally:
            for leftover in (index, index.with_name(index.name + ".lock")):
                leftover.unlink(missing_ok=True)

    def _unflag(self, env: dict[str, str]) -> None:
        """Clear ``assume-unchanged`` and ``skip-worktree`` in the copied index: ``add``
        skips such files, and the snapshot must hold what runs, not the index's copy."""
        assumed, skipped = [], []
        for entry in self.cli("ls-files", "-v", "-z", env=env).split("\0"):
            if entry[:1].islower():  # h, s, ...: assume-unchanged
                assumed.append(entry[2:])
            if entry[:1] in ("S", "s"):
                skipped.append(entry[2:])
        for flag, paths in (("--no-assume-unchanged", assumed), ("--no-skip-worktree", skipped)):
            if paths:
                self.cli("update-index", flag, "-z", "--stdin", env=env,
                         input="\0".join(paths) + "\0")

    def ref(self, name: str) -> str | None:
        out = self.cli("rev-parse", "-q", "--verify", f"{name}^{{commit}}", check=False)
        return out.strip() or None

    def _tip(self, name: str) -> str | None:
        """Where the full ref ``name`` points, read through pygit2: for the writers below,
        which load it anyway and would otherwise spend a git process on each read. A
        stale read is harmless: their compare-and-swap fails and they read again."""
        ref = self.repo.references.get(name)
        return str(ref.resolve().target) if ref is not None else None

    def set_ref(self, name: str, new: str, message: str) -> None:
        """Point ``name`` at ``new`` whatever it held: for mirrors of a remote's refs only,
        which hold nothing but what the remote was last seen to have."""
        self.cli("update-ref", "-m", message, name, new)

    def cas_ref(self, name: str, new: str, old: str | None, message: str) -> bool:
        """Move ``name`` from ``old`` to ``new`` only if nobody moved it meanwhile: False
        when somebody did (or holds its lock); any other failure (a full disk, a
        read-only repository) raises GitError, to be said as it is, not retried."""
        proc = run_git(["update-ref", "-m", message, name, new, old or ZERO], self.root,
                       check=False)
        if proc.returncode == 0:
            return True
        if any(sign in proc.stderr for sign in _CONTENTION):
            return False
        raise GitError(proc.args, proc.returncode, proc.stderr)

    def commit(self, tree: str, parents: Iterable[str], message: str) -> str:
        import pygit2

        repo = self.repo
        try:
            sig = repo.default_signature
        except (KeyError, pygit2.GitError):
            sig = pygit2.Signature("flor", "flor@localhost")
        return str(repo.create_commit(None, sig, sig, message, pygit2.Oid(hex=tree),
                                      [pygit2.Oid(hex=p) for p in parents]))

    def append_to_branch(self, ref: str, tree: str, message: str) -> str:
        """Commit ``tree`` on top of ``ref``, retrying when a concurrent writer wins."""
        return self._advance(ref, message,
                             lambda tip: self.commit(tree, [tip] if tip else [], message))

    def _advance(self, ref: str, message: str, step: Callable[[str | None], str]) -> str:
        """Move ``ref`` from its tip to ``step(tip)`` by compare-and-swap, reading the tip
        again and retrying while concurrent writers win; ``step`` returning the tip
        itself means there is nothing to do."""
        for _ in range(_CAS_TRIES):
            tip = self._tip(ref)
            new = step(tip)
            if new == tip or self.cas_ref(ref, new, tip, message):
                return new
            time.sleep(0.01)
        raise UserError(f"could not update {ref}: too many concurrent writers; try again")

    # -- notes -----------------------------------------------------------------------

    def notes_tree(self, notes_commit: str | None = None):
        commit = notes_commit or self.ref(NOTES_REF)
        return self.repo[commit].peel(_tree_type()) if commit else None

    def read_note(self, annotated: str, notes_commit: str | None = None) -> str | None:
        """The whole text of a note, its parts joined (for notes small enough to hold)."""
        key = self.note_key(annotated, notes_commit)
        return self.blob_text(key) if key else None

    def note_key(self, annotated: str, notes_commit: str | None = None) -> str | None:
        """The key of ``annotated``'s note (its part blobs), to read it a part at a time."""
        tree = self.notes_tree(notes_commit)
        return _note_key(tree, annotated) if tree is not None else None

    def iter_notes(self, notes_commit: str | None = None) -> Iterator[tuple[str, str]]:
        """(annotated object id, note key) for every note, whatever the fan-out; a key
        names the note's part blobs (see :func:`note_chunks`)."""
        tree = self.notes_tree(notes_commit)
        if tree is not None:
            yield from _walk_notes(self.repo, tree, "")

    def changed_notes(self, old_commit: str | None, new_commit: str | None
                      ) -> Iterator[tuple[str, str | None]]:
        """Notes added, changed or deleted between two notes commits: (annotated, blob|None).

        Diffing trees touches only the fan-out subtrees that changed, which is what keeps
        the cache's incremental sync cheap at 10,000 runs.
        """
        if old_commit is None:
            yield from self.iter_notes(new_commit)
            return
        old = self.notes_tree(old_commit)
        new = self.notes_tree(new_commit) if new_commit else None
        if new is None:
            for annotated, _ in _walk_notes(self.repo, old, ""):
                yield annotated, None
            return
        where: dict[str, list[str] | None] = {}  # annotated -> its note's path in ``new``
        for delta in old.diff_to_tree(new).deltas:
            gone = delta.status_char() == "D"
            path = _split_part((delta.old_file if gone else delta.new_file).path)[0]
            annotated = path.replace("/", "")
            if not gone:
                where[annotated] = path.split("/")
            else:  # deleted, or moved to another fan-out (then an addition says where)
                where.setdefault(annotated, None)
        folders = _Folders(new)
        for annotated, path in where.items():  # a changed part is a change of its whole note
            yield annotated, (folders.note_key(path) if path is not None
                              else _note_key(new, annotated))

    def tree_of(self, commit: str) -> str:
        """The tree a commit records: runs with equal trees ran the same code."""
        return str(self.repo[commit].peel(_tree_type()).id)

    def diff_trees(self, old: str, new: str) -> str:
        """The patch from one tree to another (``git diff`` of two code versions)."""
        return self.repo.diff(self.repo[old], self.repo[new]).patch or ""

    def diff_commits(self, old: str, new: str, color: bool = False) -> str:
        """git's own diff of two commits (``flor diff``), coloured as git colours it."""
        return self.cli("diff", f"--color={'always' if color else 'never'}", old, new)

    def blob_text(self, key: str) -> str:
        """The text of a note key (or of one blob): every part, joined."""
        return _text(b"".join(self.note_chunks(key)))

    def short_note_text(self, key: str, limit: int) -> str | None:
        """The text of a note of at most ``limit`` bytes (one part), else None: read
        once, where asking the length first would read each blob's header too (a tenth
        of a cache rebuild of many small notes)."""
        blobs = self.note_blobs(key)
        if len(blobs) > 1:  # a second part begins only when the first is full
            return None
        data = self.repo[blobs[0]].data
        return _text(data) if len(data) <= limit else None

    def note_chunks(self, key: str) -> Iterator[bytes]:
        """A note's parts, in order, one blob in memory at a time."""
        for blob in self.note_blobs(key):
            yield self.repo[blob].data

    @staticmethod
    def note_blobs(key: str) -> list[str]:
        """The blob ids of a note's parts, in order."""
        return key.split(_KEY_SEP)

    def blob_size(self, blob: str) -> int:
        """A blob's length from its object header, without inflating its content."""
        return self.repo.odb.read_header(blob)[1]

    def append_notes(self, additions: dict[str, str | Iterable[bytes]], message: str) -> str:
        """Append text to the notes of several objects in one notes commit (CAS, retried).

        Appending keeps every line already there: notes only ever grow, so concurrent
        writers and the union merge of :meth:`merge_notes` can never lose a record. An
        addition is text, or chunks of whole lines (a fold streaming a journal): what
        would make a part longer than :data:`PART_BYTES` goes to new parts.
        """
        repo = self.repo
        # Blobs of long additions are written once, before the compare-and-swap loop
        # (which may run step again): the chunks can be read only once.
        pieces = {annotated: _small_text(text) or _write_parts(repo, text)
                  for annotated, text in additions.items()}

        def step(tip: str | None) -> str:
            tree = self.notes_tree(tip)
            new_tree = tree.id if tree is not None else None
            for annotated, piece in pieces.items():
                parts, tree_path = [], None
                if tree is not None:
                    tree_path = _find_note_path(tree, annotated)
                    if tree_path:
                        parts = _part_blobs(tree, tree_path)
                if isinstance(piece, str):
                    last = _text(repo[parts[-1]].data) if parts else None
                    full = last is not None and len(last) + len(piece) > PART_BYTES
                    body = _join_jsonl(None if full else last, piece)
                    blob = repo.create_blob(body.encode("utf-8", "surrogateescape"))
                    blobs = [*parts, blob] if full else [*parts[:-1], blob]
                else:
                    blobs = [*parts, *piece]
                path = tree_path or [annotated[:2], annotated[2:]]
                new_tree = _tree_put_parts(repo, repo[new_tree] if new_tree else None, path, blobs)
            return self.commit(str(new_tree), [tip] if tip else [], message)

        return self._advance(NOTES_REF, message, step)

    def merge_notes(self, theirs: str, message: str) -> str:
        """Union the notes commit ``theirs`` (a fetched one) into ``refs/notes/flor``.

        What ``git notes merge -s cat_sort_uniq`` does, without its worktree under
        ``.git/NOTES_MERGE_*`` that an interrupted merge leaves behind: a note changed on
        both sides becomes the sorted set of both sides' lines, which is valid JSONL
        because every flor line is self-describing and unique. Only the notes their side
        changed since the merge base are read, so merging stays cheap at 10,000 runs.
        Notes only grow, so a deletion on their side is not taken.
        """
        repo = self.repo

        def union_tree(ours: str) -> str:
            base = repo.merge_base(ours, theirs)
            tree = self.notes_tree(ours)
            merged = tree.id
            for annotated, key in self.changed_notes(str(base) if base else None, theirs):
                if key is None:
                    continue
                path = _find_note_path(tree, annotated)
                if path is None:
                    path, blobs = [annotated[:2], annotated[2:]], _oids(key)
                else:
                    mine = [str(b) for b in _part_blobs(tree, path)]
                    if mine == key.split(_KEY_SEP):
                        continue
                    blobs = _union_parts(repo, mine, key.split(_KEY_SEP))  # one blob each
                merged = _tree_put_parts(repo, repo[merged], path, blobs)
            return str(merged)

        return self._merge_ref(NOTES_REF, theirs, message, union_tree)

    def squash_notes(self, message: str) -> tuple[int, int]:
        """Collapse the notes history only this clone has into one commit of the same tree.

        The notes tree is what counts; its history is an audit trail, one commit per
        fold, replay and pull. What every remote's mirror (``refs/notes/remotes/*/flor``)
        holds is shared and stays: those commits are the new commit's parents, so the
        next push is still a fast-forward and nothing another clone has is rewritten.
        Returns the number of notes commits before and after.
        """
        mirrors = self._notes_mirrors()

        def squashed(tip: str | None) -> str:
            if tip is None:
                return tip
            shared = [m for m in mirrors if self.is_ancestor(m, tip)]
            if tip in shared or [str(p) for p in self.repo[tip].parent_ids] == shared:
                return tip  # nothing local to squash
            return self.commit(str(self.repo[tip].peel(_tree_type()).id), shared, message)

        before = self._count(NOTES_REF)
        self._advance(NOTES_REF, message, squashed)
        return before, self._count(NOTES_REF)

    def _notes_mirrors(self) -> dict[str, None]:
        """The notes commits every remote's mirror holds (shared: never rewritten)."""
        return dict.fromkeys(sha for ref, sha in self.refs_matching(
            "refs/notes/remotes/").items() if ref.endswith("/flor"))

    def local_notes_commits(self) -> int:
        """How many notes commits only this clone has (what :meth:`squash_notes` would
        collapse into one)."""
        if not self.ref(NOTES_REF):
            return 0
        return int(self.cli("rev-list", "--count", NOTES_REF, "--not",
                            *self._notes_mirrors(), "--").strip())

    def _count(self, ref: str) -> int:
        return int(self.cli("rev-list", "--count", ref).strip()) if self.ref(ref) else 0

    def pack(self) -> tuple[int, int]:
        """Pack loose objects (``git gc``, with git's own grace period for unreachable
        ones, so a flor process writing right now loses nothing); loose objects before
        and after."""
        before = self.loose_objects()[0]
        self.cli("gc", "--quiet")
        return before, self.loose_objects()[0]

    def loose_objects(self) -> tuple[int, int]:
        """Loose objects: how many, and their size in bytes."""
        counts = dict(line.split(": ", 1) for line in
                      self.cli("count-objects", "-v").splitlines() if ": " in line)
        return int(counts.get("count", 0)), int(counts.get("size", 0)) * 1024

    def merge_branch(self, ref: str, theirs: str, message: str) -> str:
        """Bring ``theirs`` into ``ref``: fast-forward when possible, else a merge commit.

        The merge commit keeps our tree: each shadow commit is a self-contained snapshot
        reached through its note, so the tip's tree means nothing and only reachability
        of both histories matters.
        """
        return self._merge_ref(ref, theirs, message,
                               lambda ours: str(self.repo[ours].peel(_tree_type()).id))

    def _merge_ref(self, ref: str, theirs: str, message: str, merged_tree) -> str:
        """Move ``ref`` to include ``theirs`` by compare-and-swap; never drops a commit."""
        def step(ours: str | None) -> str:
            if ours == theirs or (ours and self.is_ancestor(theirs, ours)):
                return ours
            if ours is None or self.is_ancestor(ours, theirs):
                return theirs
            return self.commit(merged_tree(ours), [ours, theirs], message)

        return self._advance(ref, message, step)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return ancestor == descendant or self.repo.descendant_of(descendant, ancestor)

    # -- remotes ---------------------------------------------------------------------

    def config(self, key: str) -> str | None:
        return self.cli("config", "--get", key, check=False).strip() or None

    def remotes(self) -> list[str]:
        return self.cli("remote").split()

    def upstream_remote(self) -> str | None:
        """The remote the current branch pulls from, if it has one."""
        branch = self.head().branch
        return self.config(f"branch.{branch}.remote") if branch else None

    def config_size(self, key: str) -> int | None:
        """``key`` read as git reads sizes (``50m``, ``1k``); None when unset.
        ValueError when set to something that is not a size."""
        if self.config(key) is None:
            return None
        value = self.cli("config", "--type=int", "--get", key, check=False).strip()
        if not value.lstrip("-").isdigit():
            raise ValueError(value)
        return int(value)

    def fetch_refspecs(self, remote: str) -> list[str]:
        """The remote's configured fetch refspecs (``remote.<name>.fetch``)."""
        return self.cli("config", "--get-all", f"remote.{remote}.fetch", check=False).split()

    def add_fetch_refspec(self, remote: str, spec: str) -> None:
        self.cli("config", "--add", f"remote.{remote}.fetch", spec)

    def remove_fetch_refspec(self, remote: str, spec: str) -> None:
        """Remove ``spec`` from the remote's fetch refspecs, if it is there."""
        self.cli("config", "--fixed-value", "--unset-all", f"remote.{remote}.fetch", spec,
                 check=False)  # exit 5: it was not there

    def refs_matching(self, pattern: str) -> dict[str, str]:
        """Refs matching a ``for-each-ref`` pattern, and where they point."""
        out = self.cli("for-each-ref", "--format=%(objectname) %(refname)", pattern)
        return {ref: sha for sha, ref in (line.split(" ", 1) for line in out.splitlines())}

    def untracked_files(self) -> list[str]:
        """Untracked, not-ignored files of the worktree, relative to its root."""
        return [p for p in self.cli("ls-files", "-z", "--others", "--exclude-standard")
                .split("\0") if p]

    def tracks_any(self, path: str) -> bool:
        """Whether any file at or under ``path`` (relative to the root) is tracked."""
        return bool(self.cli("ls-files", "--", path).strip())

    def remote_refs(self, remote: str, refs: Iterable[str]) -> dict[str, str]:
        """Which of ``refs`` the remote has, and where they point (``git ls-remote``)."""
        wanted = set(refs)
        out = self._remote_cli("ls-remote", "--refs", remote, *wanted)
        found = (line.split("\t") for line in out.splitlines() if "\t" in line)
        return {name: sha for sha, name in found if name in wanted}

    def fetch_refs(self, remote: str, refspecs: Iterable[str]) -> None:
        """Fetch exactly ``refspecs``; FETCH_HEAD, tags and the user's refs stay as they are."""
        self._remote_cli("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", remote,
                         *refspecs)

    def _remote_cli(self, *args: str) -> str:
        """``git ARGS`` that talks to a remote: a failure is the remote's (RemoteError)."""
        try:
            return self.cli(*args)
        except GitError as e:
            raise RemoteError(f"git {args[0]}: {_last_line(e.stderr)}") from e

    def push_refs(self, remote: str, refspecs: Iterable[str]) -> list[str]:
        """Push without force and without running the pre-push hook (flor's own hook calls
        this: running it again would recurse). Returns the refs lost to a race with
        another pusher (fetch, merge and push again); any other failure raises RemoteError.
        """
        proc = run_git(["push", "--porcelain", "--no-verify", remote, *refspecs], self.root,
                       check=False)
        raced, failures = [], []
        for line in proc.stdout.splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[0] == "!":
                target = parts[1].split(":")[-1]
                if lost_ref_race(parts[2]):
                    raced.append(target)
                else:
                    failures.append(f"{target} {parts[2]}")
        if failures or (proc.returncode != 0 and not raced):
            raise RemoteError(f"git push: {failures[0] if failures else _last_line(proc.stderr)}")
        return raced

    def tracked_files(self, pathspec: str, cwd: Path) -> list[str]:
        """Files git tracks matching ``pathspec``, relative to ``cwd`` (``git ls-files``)."""
        return [p for p in self.cli("ls-files", "-z", "--", pathspec, cwd=cwd).split("\0") if p]

    def ignored_paths(self) -> list[str]:
        """Untracked paths git ignores, directories as one entry ending in ``/``."""
        out = self.cli("ls-files", "-z", "--others", "--ignored", "--exclude-standard",
                       "--directory")
        return [p for p in out.split("\0") if p]

    def hooks_dir(self) -> Path:
        """Where git runs hooks from, ``core.hooksPath`` honoured."""
        return (self.root / self.cli("rev-parse", "--git-path", "hooks").strip()).resolve()

    # -- worktrees -------------------------------------------------------------------

    def archive(self, rev: str) -> bytes:
        """The tree of ``rev`` as an uncompressed tar, as ``git archive`` writes it (modes
        and symlinks kept, submodules left out): the code shipped to Ray workers, which
        cannot reach this repository."""
        import io
        import tarfile

        import pygit2

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            stack = [("", self.repo.revparse_single(rev).peel(pygit2.Tree))]
            while stack:
                prefix, tree = stack.pop()
                for entry in tree:
                    path = prefix + entry.name
                    if entry.type_str == "tree":
                        stack.append((path + "/", self.repo[entry.id]))
                    elif entry.type_str == "blob":
                        data = self.repo[entry.id].data
                        info = tarfile.TarInfo(path)
                        if entry.filemode == pygit2.enums.FileMode.LINK:
                            info.type, info.linkname = tarfile.SYMTYPE, data.decode()
                            tar.addfile(info)
                            continue
                        info.size = len(data)
                        executable = entry.filemode == pygit2.enums.FileMode.BLOB_EXECUTABLE
                        info.mode = 0o755 if executable else 0o644
                        tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    def add_worktree(self, path: Path, commit: str) -> None:
        # no hooks: the user's post-checkout must not run for flor's private checkouts
        with self._worktrees_locked():
            self.cli("-c", "core.hooksPath=/dev/null", "worktree", "add", "--detach",
                     "--force", str(path), commit)

    def remove_worktree(self, path: Path) -> None:
        with self._worktrees_locked():
            self.cli("worktree", "remove", "--force", str(path), check=False)
            shutil.rmtree(path, ignore_errors=True)
            self.cli("worktree", "prune", check=False)

    @contextmanager
    def _worktrees_locked(self) -> Iterator[None]:
        """One ``git worktree`` change at a time, across threads and processes: git names
        a worktree's admin directory after the checkout's last path component (the
        repository's name, for every one flor makes), and two adds racing for a name,
        or a prune meeting a half-made add, fail."""
        with exclusive(self.flor_dir / "worktrees.lock"):
            yield


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "failed"


def _text(data: bytes) -> str:
    """A note's text. A note may come from another clone: bytes that are not UTF-8 stay
    (as surrogates) for the reader to skip their lines, and are written back unchanged."""
    return data.decode("utf-8", "surrogateescape")


# How a push that lost a race with another pusher reads in ``git push --porcelain``:
# rejected by this side because the remote moved since we last saw it, or by the
# remote while it locked or compare-and-swapped the ref ("failed to update ref",
# "cannot lock ref '...': is at X but expected Y", "reference already exists", and a
# receive.denyNonFastForwards remote's "non-fast-forward" when it moved under us).
# Anything else (a hook declining, permissions, a broken pack) is a real error.
_RACE_REASONS = ("failed to update ref", "cannot lock ref", "unable to lock", "failed to lock",
                 "incorrect old value", "but expected", "reference already exists",
                 "non-fast-forward", "fetch first")


def lost_ref_race(status: str) -> bool:
    """Whether a ``git push --porcelain`` status (``[rejected] (fetch first)``) is a race."""
    if status.startswith("[rejected]"):
        return True
    return status.startswith("[remote rejected]") and any(
        reason in status for reason in _RACE_REASONS)


def _tree_type():
    import pygit2

    return pygit2.Tree


def _join_jsonl(current: str | None, text: str) -> str:
    if not current:
        return text if text.endswith("\n") else text + "\n"
    if not current.endswith("\n"):
        current += "\n"
    return current + (text if text.endswith("\n") else text + "\n")


# -- note parts ---------------------------------------------------------------------
#
# git hosts refuse big blobs (GitHub: over 100 MB), and a run logging 10^7 values has a
# note of ~800 MB. So a note longer than PART_BYTES is split, at line boundaries, into
# parts: the first is the note itself (``ab/cdef...``, what git shows), the others lie
# beside it as ``ab/cdef....1``, ``....2`` ... in the same notes tree. git keeps such
# entries as they are (names that are not object ids are "non-notes" to it), pushes and
# fetches them with the notes, and flor reads a note as its parts' lines in order.
# Lines are self-describing, so parts merge one by one (a union of lines, like the
# notes themselves), and which part a line is in never changes what is read.

PART_BYTES = 32 << 20
_PART_MARK = "."
_KEY_SEP = "+"  # a note key: its part blobs joined, e.g. "<blob>+<blob>"


def _split_part(path: str) -> tuple[str, int]:
    """(note path, part number) of a notes-tree path: part 0 is the note itself."""
    head, mark, number = path.rpartition(_PART_MARK)
    return (head, int(number)) if mark and number.isdigit() else (path, 0)


def _part_blobs(tree, path: list[str]) -> list:
    """The blob ids of the note at ``path``, its parts in order."""
    return _folder_parts(_lookup(tree, path[:-1]) if len(path) > 1 else tree, path[-1])


def _folder_parts(folder, leaf: str) -> list:
    """The blob ids of the note named ``leaf`` in ``folder``, its parts in order."""
    blobs, k = [folder[leaf].id], 1
    while f"{leaf}{_PART_MARK}{k}" in folder:
        blobs.append(folder[f"{leaf}{_PART_MARK}{k}"].id)
        k += 1
    return blobs


class _Folders:
    """The folders of a notes tree, each read from the object store once: a changed
    note's key is found in its folder, which at 100,000 notes holds ~400 entries (read
    again for each of 1,000 new notes, that was most of an incremental sync)."""

    def __init__(self, tree):
        self.tree, self.read = tree, {}

    def note_key(self, path: list[str]) -> str | None:
        """The key of the note at ``path`` (folders, then the note's name); None if
        that path is not the note's first part (a part left without its note)."""
        dirs = "/".join(path[:-1])
        if dirs not in self.read:
            try:
                self.read[dirs] = _lookup(self.tree, path[:-1])
            except KeyError:
                self.read[dirs] = None
        folder, leaf = self.read[dirs], path[-1]
        if folder is None or leaf not in folder:
            return None
        return _KEY_SEP.join(str(b) for b in _folder_parts(folder, leaf))


def _note_key(tree, annotated: str) -> str | None:
    path = _find_note_path(tree, annotated)
    return _KEY_SEP.join(str(b) for b in _part_blobs(tree, path)) if path else None


def _oids(key: str) -> list:
    import pygit2

    return [pygit2.Oid(hex=blob) for blob in key.split(_KEY_SEP)]


def _small_text(text: str | Iterable[bytes]) -> str | None:
    """``text`` itself when it is text short enough to join a note's last part."""
    return text if isinstance(text, str) and len(text) <= PART_BYTES else None


def _write_parts(repo, text: str | Iterable[bytes]) -> list:
    """Blobs of at most about PART_BYTES each, split at line ends, from text or chunks."""
    chunks = [text.encode("utf-8", "surrogateescape")] if isinstance(text, str) else text
    blobs, pending, size = [], [], 0
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        while size > PART_BYTES:
            data = b"".join(pending)
            cut = data.rfind(b"\n", 0, PART_BYTES) + 1 or data.find(b"\n") + 1 or len(data)
            blobs.append(repo.create_blob(data[:cut]))
            pending, size = [data[cut:]], len(data) - cut
    data = b"".join(pending)
    if data or not blobs:
        blobs.append(repo.create_blob(data if data.endswith(b"\n") or not data
                                      else data + b"\n"))
    return blobs


def _union_parts(repo, ours: list[str], theirs: list[str]) -> list:
    """Both notes' lines, part by part (a part only one side has is taken as it is)."""
    merged = []
    for k in range(max(len(ours), len(theirs))):
        if k >= len(ours) or k >= len(theirs) or ours[k] == theirs[k]:
            merged.append(repo[(ours if k < len(ours) else theirs)[k]].id)
        else:
            merged.append(repo.create_blob(_union_lines(repo[ours[k]].data,
                                                        repo[theirs[k]].data)))
    return merged


def _tree_put_parts(repo, tree, path: list[str], blobs: list):
    """``tree`` with the note at ``path`` made of ``blobs`` (stale parts removed)."""
    folder_path, leaf = path[:-1], path[-1]
    folder = tree
    for name in folder_path:
        folder = folder[name] if folder is not None and name in folder else None
    old_parts = 0
    if folder is not None:
        while f"{leaf}{_PART_MARK}{old_parts + 1}" in folder:
            old_parts += 1
    builder = repo.TreeBuilder(folder) if folder is not None else repo.TreeBuilder()
    builder.insert(leaf, blobs[0], _BLOB)
    for k in range(1, max(old_parts, len(blobs) - 1) + 1):
        name = f"{leaf}{_PART_MARK}{k}"
        if k < len(blobs):
            builder.insert(name, blobs[k], _BLOB)
        else:
            builder.remove(name)
    sub = builder.write()
    return _tree_put(repo, tree, folder_path, sub, _TREE) if folder_path else sub


def _union_lines(ours: bytes, theirs: bytes) -> bytes:
    """Both notes' lines, sorted and de-duplicated: git's ``cat_sort_uniq``."""
    lines = {line for line in (ours + b"\n" + theirs).split(b"\n") if line.strip()}
    return b"".join(line + b"\n" for line in sorted(lines))


def _lookup(tree, path: list[str]):
    obj = tree
    for part in path:
        obj = obj[part]
    return obj


def _find_note_path(tree, annotated: str) -> list[str] | None:
    """Where git may have put the note of ``annotated``: flat, 2/38 or 2/2/36."""
    for path in ([annotated[:2], annotated[2:]], [annotated],
                 [annotated[:2], annotated[2:4], annotated[4:]]):
        try:
            _lookup(tree, path)
            return path
        except KeyError:
            continue
    return None


def _walk_notes(repo, tree, prefix: str) -> Iterator[tuple[str, str]]:
    parts: dict[str, list[tuple[int, str]]] = {}
    for entry in tree:
        if entry.type_str == "tree":
            yield from _walk_notes(repo, repo[entry.id], prefix + entry.name)
        else:
            name, k = _split_part(entry.name)
            parts.setdefault(name, []).append((k, str(entry.id)))
    for name, blobs in parts.items():
        blobs.sort()
        if blobs[0][0] == 0:  # parts without their note are no note
            yield prefix + name, _KEY_SEP.join(blob for _, blob in blobs)


def _tree_put(repo, tree, path: list[str], obj, mode: int = _BLOB) -> "object":
    """A copy of ``tree`` with ``obj`` at ``path``, rewriting only the subtrees on the path."""
    builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    head, rest = path[0], path[1:]
    if not rest:
        builder.insert(head, obj, mode)
    else:
        sub = tree[head] if tree is not None and head in tree else None
        sub_tree = repo[sub.id] if sub is not None else None
        builder.insert(head, _tree_put(repo, sub_tree, rest, obj, mode), _TREE)
    return builder.write()
