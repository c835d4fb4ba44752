"""Pushing over git:// to a real `git daemon` on loopback, whose hook can refuse us.

libgit2 reports a server-side refusal through a callback, not an exception; these tests
prove gitcert notices it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BOOTSTRAP, CertRepo, git, leaf


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A bare repository served by `git daemon` on a free loopback port."""
    base = tmp_path / "served"
    bare = base / "certs.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    port = free_port()
    process = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack",
         f"--base-path={base}", "--listen=127.0.0.1", f"--port={port}", str(base)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"git://127.0.0.1:{port}/certs.git", bare
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


@pytest.fixture
def repo_with_remote(cert_repo: CertRepo, daemon: tuple[str, Path]) -> CertRepo:
    url, _ = daemon
    git(cert_repo.path, "remote", "add", "origin", url)
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP + leaf("web"))
    cert_repo.commit()
    return cert_repo


def test_apply_pushes_over_git_protocol(
    repo_with_remote: CertRepo, daemon: tuple[str, Path]
) -> None:
    result = repo_with_remote.gitcert("apply", "--push")
    assert result.exit_code == 0, result.output
    assert git(daemon[1], "rev-parse", "main").strip() == repo_with_remote.head()


def test_a_hook_refusing_the_push_is_an_error(
    repo_with_remote: CertRepo, daemon: tuple[str, Path]
) -> None:
    hook = daemon[1] / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is protected' >&2\nexit 1\n")
    hook.chmod(0o755)

    result = repo_with_remote.gitcert("apply", "--push")
    assert result.exit_code == 1
    assert "push to origin was refused: refs/heads/main: pre-receive hook declined" in result.output
    # The commit stays local: the repo is strictly better, and the next push retries it.
    assert repo_with_remote.log()[0] == "gitcert: issue 2"
    assert subprocess.run(["git", "-C", str(daemon[1]), "rev-parse", "--verify", "-q", "main"],
                          capture_output=True).returncode != 0  # fmt: skip
