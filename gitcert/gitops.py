"""Everything gitcert does with git, through pygit2 and nothing else.

Reads go through :class:`Tree`, a view of the files at one commit: the work tree is never
read, so a plan of ``--ref main~3`` sees exactly that commit. Writes build a new tree in
memory from the parent's plus changed blobs, commit it, bring a checked-out work tree
along, then move the branch. Pushes report server-side refusals, which libgit2 delivers
through a callback rather than an exception.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pygit2

from gitcert.errors import GitError, PushRejectedError, UserError
from gitcert.model import FileSource

log = logging.getLogger(__name__)


Repository = pygit2.Repository


class Tree(FileSource):
    """The files of one commit. Cheap to query: blobs are read only when asked for.

    Walking a directory indexes its files (path to blob id); later reads under it go
    straight to the object database. libgit2's path lookup walks the tree from the root
    on every call, which costs more than reading the blob itself.
    """

    def __init__(self, repo: pygit2.Repository, commit: pygit2.Commit | None) -> None:
        self.repo = repo
        self.commit = commit
        self._tree = commit.tree if commit is not None else None
        self._walked: dict[str, list[tuple[str, str]]] = {}
        self._index: dict[str, str] = {}

    @property
    def commit_id(self) -> str | None:
        return str(self.commit.id) if self.commit is not None else None

    def _entry(self, path: str) -> pygit2.Object | None:
        if self._tree is None:
            return None
        try:
            return self._tree[path]
        except KeyError:
            return None

    def _indexed(self, path: str) -> bool:
        return any(path.startswith(prefix + "/") or not prefix for prefix in self._walked)

    def blob_id(self, path: str) -> str | None:
        if path in self._index:
            return self._index[path]
        if self._indexed(path):
            return None
        entry = self._entry(path)
        return str(entry.id) if entry is not None and entry.type == pygit2.GIT_OBJECT_BLOB else None

    def read(self, path: str) -> bytes | None:
        oid = self.blob_id(path)
        return self.read_blob(oid) if oid is not None else None

    def read_blob(self, oid: str) -> bytes:
        blob = self.repo[oid]
        assert isinstance(blob, pygit2.Blob)
        return blob.data

    def walk(self, prefix: str) -> list[tuple[str, str]]:
        if prefix not in self._walked:
            found = sorted(self._walk(prefix))
            self._index.update(found)
            self._walked[prefix] = found
        return self._walked[prefix]

    def _walk(self, prefix: str) -> list[tuple[str, str]]:
        start = self._entry(prefix) if prefix else self._tree
        if start is None or start.type != pygit2.GIT_OBJECT_TREE:
            return []
        found: list[tuple[str, str]] = []
        stack: list[tuple[str, pygit2.Tree]] = [(prefix, self.repo[start.id].peel(pygit2.Tree))]
        while stack:
            base, tree = stack.pop()
            for entry in tree:
                path = f"{base}/{entry.name}" if base else str(entry.name)
                if entry.type == pygit2.GIT_OBJECT_TREE:
                    stack.append((path, self.repo[entry.id].peel(pygit2.Tree)))
                elif entry.type == pygit2.GIT_OBJECT_BLOB:
                    found.append((path, str(entry.id)))
        return found


@dataclass(frozen=True)
class Target:
    """Where apply commits: a branch, and the commit it was at when we started."""

    branch: str
    tree: Tree


def open_repo(path: str | Path) -> pygit2.Repository:
    try:
        return pygit2.Repository(str(path))
    except (pygit2.GitError, KeyError) as exc:
        raise UserError(f"{path} is not a git repository") from exc


def resolve(repo: pygit2.Repository, ref: str | None) -> Tree:
    """The tree at ``ref`` (default HEAD). An unborn HEAD is an empty tree."""
    if ref is None and repo.head_is_unborn:
        return Tree(repo, None)
    try:
        target = repo.revparse_single(ref or "HEAD")
        commit = target.peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError) as exc:
        raise UserError(f"unknown ref {ref!r} (not a branch, tag or commit here)") from exc
    return Tree(repo, commit)


def branch_target(repo: pygit2.Repository, ref: str | None) -> Target:
    """The branch that apply moves. A ref that names no branch cannot be applied to."""
    if ref is None:
        if repo.head_is_detached:
            raise UserError("HEAD is detached; apply commits to a branch: pass --ref BRANCH")
        branch = repo.references["HEAD"].target
        branch = branch if isinstance(branch, str) else repo.head.name
    else:
        branch = ref if ref.startswith("refs/heads/") else f"refs/heads/{ref}"
        if branch not in repo.references:
            raise UserError(f"apply needs a local branch; {ref!r} is not one")
    tree = Tree(repo, None) if repo.head_is_unborn and ref is None else resolve(repo, branch)
    return Target(branch=branch, tree=tree)


def commit_changes(
    repo: pygit2.Repository,
    target: Target,
    changes: Mapping[str, bytes | None],
    message: str,
    author: tuple[str, str],
) -> str:
    """Commit ``changes`` (path → bytes, or None to delete) on top of ``target``.

    The new tree is built in memory. When the branch is checked out in a work tree, the
    work tree is moved along in SAFE mode first, so a user's uncommitted edits to the same
    files make us stop before anything is changed.

    Raises:
        GitError: the branch moved underneath us, or the work tree has conflicting edits.
    """
    parent = target.tree.commit
    tree_id = _index_with(repo, parent, changes).write_tree(repo)

    signature = pygit2.Signature(*author)
    parents = [parent.id] if parent is not None else []
    commit_id = repo.create_commit(None, signature, signature, message, tree_id, parents)

    _move_branch(repo, target, commit_id)
    log.info("committed %s on %s", str(commit_id)[:12], target.branch)
    return str(commit_id)


def _index_with(
    repo: pygit2.Repository, parent: pygit2.Commit | None, changes: Mapping[str, bytes | None]
) -> pygit2.Index:
    """An in-memory index: the parent's tree with ``changes`` applied (None deletes)."""
    index = pygit2.Index()
    if parent is not None:
        index.read_tree(parent.tree)
    for path, data in sorted(changes.items()):
        if data is None:
            if path in index:
                index.remove(path)
            continue
        index.add(pygit2.IndexEntry(path, repo.create_blob(data), pygit2.enums.FileMode.BLOB))
    return index


def _move_branch(repo: pygit2.Repository, target: Target, commit_id: pygit2.Oid) -> None:
    current = repo.references.get(target.branch)
    old = target.tree.commit
    if (current.target if current is not None else None) != (old.id if old else None):
        raise GitError(f"{target.branch} moved while gitcert was running; run again")

    checked_out = (
        not repo.is_bare
        and not repo.head_is_detached
        and (repo.head_is_unborn or repo.head.name == target.branch)
    )
    if checked_out and old is not None:
        # Checkout before moving the branch: SAFE mode compares the work tree with the old
        # HEAD, so it refuses (and nothing changes) if the user edited a file we rewrite.
        # Only paths that differ are touched; the user's other staged work is kept.
        try:
            # pygit2 leaves checkout_tree unannotated.
            repo.checkout_tree(  # type: ignore[no-untyped-call]
                repo[commit_id], strategy=pygit2.enums.CheckoutStrategy.SAFE
            )
        except pygit2.GitError as exc:
            raise GitError(
                f"the work tree has uncommitted changes to files gitcert writes: {exc}"
            ) from exc

    if current is None:
        repo.references.create(target.branch, commit_id)
    else:
        current.set_target(commit_id)


# A token for HTTPS remotes, such as a GitHub Actions job's. libgit2 does not read the
# http.extraheader in which actions/checkout leaves its token, so the job passes it here.
GIT_TOKEN_ENV = "GITCERT_GIT_TOKEN"


class _PushCallbacks(pygit2.RemoteCallbacks):
    """Collects per-reference refusals, which libgit2 reports here instead of raising; and
    answers an HTTPS remote's request for credentials with ``$GITCERT_GIT_TOKEN``."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: dict[str, str] = {}
        self._offered = False

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: pygit2.enums.CredentialType
    ) -> pygit2.UserPass:
        token = os.environ.get(GIT_TOKEN_ENV, "")
        plaintext = bool(allowed_types & pygit2.enums.CredentialType.USERPASS_PLAINTEXT)
        # Offered once: libgit2 asks again after a refusal and would ask forever. Never
        # over plain HTTP, where anyone on the way could read it.
        if not token or self._offered or not plaintext or not url.startswith("https://"):
            raise pygit2.Passthrough
        self._offered = True
        return pygit2.UserPass(username_from_url or "x-access-token", token)

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message:
            self.refused[refname] = message


def push(repo: pygit2.Repository, remote_name: str, local_branch: str, remote_branch: str) -> None:
    """Push ``local_branch`` to ``remote_branch`` of ``remote_name``.

    Raises:
        PushRejectedError: the remote refused (not a fast-forward, a hook said no).
        UserError: there is no such remote.
    """
    try:
        remote = repo.remotes[remote_name]
    except KeyError as exc:
        raise UserError(f"no git remote named {remote_name!r}") from exc

    refspec = f"{local_branch}:refs/heads/{remote_branch}"
    callbacks = _PushCallbacks()
    try:
        remote.push([refspec], callbacks=callbacks)
    except pygit2.GitError as exc:
        error = RemoteMovedError if _moved(str(exc)) else PushRejectedError
        raise error(f"push to {remote_name} {remote_branch} was rejected: {exc}") from exc
    if callbacks.refused:
        reasons = "; ".join(f"{ref}: {msg}" for ref, msg in callbacks.refused.items())
        error = RemoteMovedError if _moved(reasons) else PushRejectedError
        raise error(f"push to {remote_name} was refused: {reasons}")
    log.info("pushed %s to %s/%s", local_branch, remote_name, remote_branch)


class RemoteMovedError(PushRejectedError):
    """Someone pushed first: the branch can be replayed on the new remote head."""


def _moved(message: str) -> bool:
    # libgit2 says so client-side for a stale or diverged branch; a server says
    # "non-fast-forward" or "fetch first"; a busy local remote fails to take its lock.
    signs = (
        "not present locally",
        "non-fastforward",
        "non-fast-forward",
        "fetch first",
        "failed to update ref",  # receive-pack lost the race for the ref to another push
        "lock",
    )
    return any(sign in message.lower() for sign in signs)


def push_replaying(
    repo: pygit2.Repository,
    remote_name: str,
    local_branch: str,
    remote_branch: str,
    attempts: int = 8,
) -> None:
    """Push; when the remote moved meanwhile, replay our commits on its head and try again.

    Parallel jobs (shards) write disjoint files, so replaying is safe. When the remote
    changed a file we changed too, we stop: the certificate must be planned again.

    Raises:
        PushRejectedError: refused for another reason, conflicting, or still moving.
    """
    for attempt in range(1, attempts + 1):
        try:
            push(repo, remote_name, local_branch, remote_branch)
            return
        except RemoteMovedError:
            if attempt == attempts:
                raise
            log.info("%s/%s moved; replaying our commit on it", remote_name, remote_branch)
            _replay(repo, remote_name, local_branch, remote_branch)
            time.sleep(random.uniform(0.05, 0.3) * attempt)  # let the other pusher finish


def _replay(
    repo: pygit2.Repository, remote_name: str, local_branch: str, remote_branch: str
) -> None:
    tracking = f"refs/remotes/{remote_name}/{remote_branch}"
    refspec = f"+refs/heads/{remote_branch}:{tracking}"
    repo.remotes[remote_name].fetch([refspec], callbacks=_PushCallbacks())
    theirs = repo.references[tracking].peel(pygit2.Commit)
    ours = repo.references[local_branch].peel(pygit2.Commit)
    base_id = repo.merge_base(ours.id, theirs.id)
    if base_id is None:
        raise PushRejectedError(f"{local_branch} and {tracking} share no history")
    if base_id == ours.id:
        # Nothing of ours is missing there: just catch up.
        _set_branch(repo, local_branch, ours, theirs.id)
        return

    base = repo[base_id].peel(pygit2.Commit)
    mine = _changes(repo, base.tree, ours.tree)
    overlap = sorted(set(mine) & set(_changes(repo, base.tree, theirs.tree)))
    if overlap:
        raise PushRejectedError(
            f"the remote changed {', '.join(overlap[:5])} too; run gitcert again on its new head"
        )
    message = "".join(c.message for c in _since(repo, ours, base_id))
    tree_id = _index_with(repo, theirs, mine).write_tree(repo)
    # Same author; the committer is "now", as for any rebased commit.
    committer = pygit2.Signature(ours.committer.name, ours.committer.email)
    replayed = repo.create_commit(None, ours.author, committer, message, tree_id, [theirs.id])
    _set_branch(repo, local_branch, ours, replayed)


def _changes(
    repo: pygit2.Repository, old: pygit2.Tree, new: pygit2.Tree
) -> dict[str, bytes | None]:
    changed: dict[str, bytes | None] = {}
    for delta in old.diff_to_tree(new).deltas:
        if delta.status == pygit2.enums.DeltaStatus.DELETED:
            changed[delta.old_file.path] = None
        else:
            blob = repo[delta.new_file.id]
            assert isinstance(blob, pygit2.Blob)
            changed[delta.new_file.path] = blob.data
    return changed


def _since(repo: pygit2.Repository, tip: pygit2.Commit, base: pygit2.Oid) -> list[pygit2.Commit]:
    walker = repo.walk(tip.id, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE)
    walker.hide(base)
    return list(walker)


def _set_branch(repo: pygit2.Repository, branch: str, old: pygit2.Commit, new: pygit2.Oid) -> None:
    """Move ``branch`` from ``old`` to ``new``, bringing a checked-out work tree along."""
    target = Target(branch=branch, tree=Tree(repo, old))
    _move_branch(repo, target, new)


def init_repository(path: Path, branch: str) -> pygit2.Repository:
    return pygit2.init_repository(str(path), initial_head=branch)


def sync_index(repo: pygit2.Repository) -> None:
    """Make the index match HEAD (after committing files that were already on disk)."""
    repo.index.read_tree(repo.head.peel(pygit2.Tree))
    repo.index.write()


JOURNAL_REF = "refs/gitcert/journal"


class Journal:
    """Files kept on a side ref, written at once, outside the branch's history.

    An issuer journals what an interrupted run needs to resume (an ACME order URL and its
    key, encrypted) the moment it exists. The branch gets one commit at the end of a run;
    the journal survives a run that never gets there. Thread-safe.
    """

    def __init__(self, repo: pygit2.Repository, ref: str = JOURNAL_REF) -> None:
        self.repo = repo
        self.ref = ref
        self._lock = threading.Lock()

    def _head(self) -> pygit2.Commit | None:
        reference = self.repo.references.get(self.ref)
        return reference.peel(pygit2.Commit) if reference is not None else None

    def read(self, path: str) -> bytes | None:
        with self._lock:
            return Tree(self.repo, self._head()).read(path)

    def paths(self) -> list[str]:
        with self._lock:
            return [path for path, _ in Tree(self.repo, self._head()).walk("")]

    def write(self, changes: Mapping[str, bytes | None], message: str) -> None:
        with self._lock:
            head = self._head()
            tree = Tree(self.repo, head)
            if all(tree.read(p) == data for p, data in changes.items()):
                return
            target = Target(branch=self.ref, tree=tree)
            index = _index_with(self.repo, head, changes)
            signature = pygit2.Signature("gitcert", "gitcert@localhost")
            parents = [head.id] if head is not None else []
            commit = self.repo.create_commit(
                None, signature, signature, message, index.write_tree(self.repo), parents
            )
            self.repo.references.create(target.branch, commit, force=True)


def uncommitted(repo: pygit2.Repository, prefixes: tuple[str, ...]) -> list[str]:
    """Work-tree files under ``prefixes`` that differ from HEAD (edited, new, deleted)."""
    if repo.is_bare:
        return []
    changed = []
    for path, flags in repo.status(untracked_files="all").items():
        if flags & pygit2.enums.FileStatus.IGNORED:
            continue
        if any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes):
            changed.append(path)
    return sorted(changed)
