"""Sharding: four processes, one remote, every certificate issued exactly once.

Each shard is a separate `gitcert apply --shard K/4 --push` process in its own clone; they
race to push, and the losers replay their commit on the new remote head.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from gitcert.model import ObjectKey
from gitcert.reconcile import Shard
from tests.conftest import BOOTSTRAP, NOW, CertRepo, git, leaf
from tests.test_push import daemon as _daemon  # a fixture: git daemon on loopback

NAMES = [f"svc{i:02d}" for i in range(24)]


def test_shards_split_every_certificate_exactly_once() -> None:
    keys = [ObjectKey("Certificate", ns, n) for ns in ("a", "b", "c") for n in NAMES]
    owners = Counter(sum(Shard(k, 4).holds(key) for k in range(1, 5)) for key in keys)
    assert owners == {1: len(keys)}
    sizes = [sum(Shard(k, 4).holds(key) for key in keys) for k in range(1, 5)]
    assert min(sizes) >= 8, sizes  # a hash spreads them; none is starved


@pytest.mark.parametrize("text", ["0/4", "5/4", "x", "1-4"])
def test_a_bad_shard_is_a_clear_error(cert_repo: CertRepo, text: str) -> None:
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    cert_repo.commit()
    result = cert_repo.gitcert("plan", "--shard", text)
    assert result.exit_code == 1
    assert "expected K/N" in result.output


daemon = _daemon


def test_four_shards_race_to_one_remote(
    cert_repo: CertRepo, tmp_path: Path, daemon: tuple[str, Path]
) -> None:
    # A git server, as in a real matrix job: receive-pack updates the branch atomically and
    # refuses a stale push. (libgit2's plain-path transport does not: with it, concurrent
    # pushers can overwrite each other.)
    url, remote = daemon
    git(cert_repo.path, "remote", "add", "origin", url)
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    cert_repo.commit()
    assert cert_repo.gitcert("apply", "--push").exit_code == 0

    cert_repo.write("manifests/apps.yaml", "".join(leaf(n, "apps") for n in NAMES))
    cert_repo.commit("24 services")
    git(cert_repo.path, "push", "-q", "origin", "main")

    clones = []
    for k in range(1, 5):
        clone = tmp_path / f"shard{k}"
        git(tmp_path, "clone", "-q", url, str(clone))
        clones.append(clone)
    env = {**os.environ, "GITCERT_NOW": NOW}
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gitcert",
                "apply",
                "--push",
                "--shard",
                f"{k}/4",
                "--repo",
                str(c),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for k, c in enumerate(clones, start=1)
    ]
    outputs = [run.communicate(timeout=180)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], outputs

    files = git(remote, "ls-tree", "-r", "--name-only", "main").split()
    secrets = sorted(f for f in files if f.startswith("secrets/apps/"))
    assert secrets == sorted(f"secrets/apps/{n}-tls.yaml" for n in NAMES)
    # Exactly once: each Secret was written by one commit, and each status is revision 1.
    for name in NAMES:
        log = git(remote, "log", "--format=%H", "main", "--", f"secrets/apps/{name}-tls.yaml")
        assert len(log.split()) == 1, name
        status = git(remote, "show", f"main:status/apps/{name}.yaml")
        assert '"revision": 1,' in status
    shard_commits = git(remote, "log", "--topo-order", "--format=%s", "main").splitlines()[:4]
    assert sorted(shard_commits) == sorted(f"gitcert: issue {n}" for n in _sizes())


def _sizes() -> list[int]:
    key = lambda n: ObjectKey("Certificate", "apps", n)  # noqa: E731
    return [sum(Shard(k, 4).holds(key(n)) for n in NAMES) for k in range(1, 5)]
