"""Shared fixtures: a throwaway age identity, and cert repositories made of real git repos.

Keys are generated at run time; nothing secret is stored in the test tree. The gitcert
command line runs in-process through click's runner, with the clock pinned by ``--now``.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from pyrage import x25519

from gitcert.cli import cli
from gitcert.scaffold import SOPS_RULES

NOW = "2026-06-01T12:00:00Z"

CONFIG = """\
apiVersion: gitcert.dev/v1alpha1
kind: Config
spec:
  git:
    author: {name: gitcert-test, email: test@localhost}
"""

BOOTSTRAP = """\
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: selfsigned
spec:
  selfSigned: {}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: root-ca
  namespace: cert-manager
spec:
  isCA: true
  commonName: Test Root CA
  secretName: root-ca
  duration: 8760h
  issuerRef: {name: selfsigned, kind: ClusterIssuer}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: ca
spec:
  ca:
    secretName: root-ca
"""


@dataclass(frozen=True)
class AgeKey:
    key_file: Path
    recipient: str


@pytest.fixture(scope="session")
def age_key(tmp_path_factory: pytest.TempPathFactory) -> AgeKey:
    identity = x25519.Identity.generate()
    key_file = tmp_path_factory.mktemp("age") / "keys.txt"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{identity}\n")
    return AgeKey(key_file, str(identity.to_public()))


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, age_key: AgeKey, tmp_path: Path) -> None:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(age_key.key_file))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GITCERT_NOW", raising=False)
    monkeypatch.delenv("SOPS_AGE_KEY", raising=False)


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@localhost",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@localhost",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


class CertRepo:
    """A real git repository holding a cert repo, with helpers to edit, commit and run."""

    def __init__(self, path: Path, recipient: str) -> None:
        self.path = path
        git(path.parent, "init", "-q", "-b", "main", str(path))
        self.write("gitcert.yaml", CONFIG)
        # The rules `gitcert init` writes: tests exercise the repos users get.
        self.write(".sops.yaml", SOPS_RULES.format(recipients=recipient))

    def write(self, name: str, text: str | bytes) -> None:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(textwrap.dedent(text))

    def read(self, name: str) -> str:
        return (self.path / name).read_text()

    def commit(self, message: str = "edit") -> str:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD").strip()

    def log(self) -> list[str]:
        return git(self.path, "log", "--format=%s").splitlines()

    def show(self, what: str) -> str:
        return git(self.path, "show", what)

    def gitcert(self, *args: str, now: str | None = NOW) -> Result:
        argv = [*args, "--repo", str(self.path)]
        if now is not None and {"plan", "apply", "status", "validate", "revoke"} & set(args):
            argv += ["--now", now]
        return CliRunner().invoke(cli, argv, catch_exceptions=False)


@pytest.fixture
def cert_repo(tmp_path: Path, age_key: AgeKey) -> Iterator[CertRepo]:
    yield CertRepo(tmp_path / "repo", age_key.recipient)


def leaf(name: str, namespace: str = "default", **spec: object) -> str:
    """A Certificate manifest issued by the ``ca`` ClusterIssuer; ``spec`` adds fields."""
    import yaml

    body = {
        "secretName": f"{name}-tls",
        "dnsNames": [f"{name}.example.test"],
        "issuerRef": {"name": "ca", "kind": "ClusterIssuer"},
        **spec,
    }
    document = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }
    return "---\n" + yaml.safe_dump(document, sort_keys=False)


# --- Real ACME and DNS servers on loopback (helpers in tests/servers.py) --------------------------

from tests.servers import (  # noqa: E402
    Bind9,
    Challtestsrv,
    Pebble,
    PebbleTLS,
    free_port,
    make_eab_key,
    make_pebble_tls,
    start_bind9,
    start_challtestsrv,
    start_pebble,
)

SERVER_FIXTURES = {"challtestsrv", "bind9", "pebble_http01", "pebble_dns01", "pebble_eab"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a real-server fixture with ``pebble``."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.pebble)


@pytest.fixture(scope="session")
def pebble_tls(tmp_path_factory: pytest.TempPathFactory) -> PebbleTLS:
    """Throwaway TLS CA + localhost cert for Pebble's HTTPS; clients trust ``.ca_pem``."""
    return make_pebble_tls(tmp_path_factory.mktemp("pebble-tls"))


@pytest.fixture
def challtestsrv(tmp_path: Path) -> Iterator[Challtestsrv]:
    """A fresh pebble-challtestsrv per test: every name has A 127.0.0.1, no AAAA, no TXT."""
    with start_challtestsrv(tmp_path / "challtestsrv") as server:
        yield server


@pytest.fixture
def bind9(tmp_path: Path) -> Iterator[Bind9]:
    """A fresh BIND9 per test, authoritative for example.test, TSIG-signed updates only."""
    with start_bind9(tmp_path / "bind9") as server:
        yield server


@pytest.fixture
def pebble_http01(
    tmp_path: Path, pebble_tls: PebbleTLS, challtestsrv: Challtestsrv
) -> Iterator[Pebble]:
    """Pebble resolving through challtestsrv; serve HTTP-01 on 127.0.0.1:``.http_port``."""
    with start_pebble(
        tmp_path / "pebble-http01",
        tls=pebble_tls,
        dns_port=challtestsrv.dns_port,
        http_port=free_port(),
    ) as pebble:
        yield pebble


@pytest.fixture
def pebble_dns01(tmp_path: Path, pebble_tls: PebbleTLS, bind9: Bind9) -> Iterator[Pebble]:
    """Pebble resolving through the ``bind9`` fixture (DNS-01 records go there by RFC 2136)."""
    with start_pebble(
        tmp_path / "pebble-dns01",
        tls=pebble_tls,
        dns_port=bind9.port,
        http_port=free_port(),
    ) as pebble:
        yield pebble


@pytest.fixture
def pebble_eab(
    tmp_path: Path, pebble_tls: PebbleTLS, challtestsrv: Challtestsrv
) -> Iterator[Pebble]:
    """Pebble requiring EAB (``.eab_kid``, ``.eab_hmac_key``), resolving through challtestsrv."""
    with start_pebble(
        tmp_path / "pebble-eab",
        tls=pebble_tls,
        dns_port=challtestsrv.dns_port,
        http_port=free_port(),
        eab_keys=dict([make_eab_key()]),
    ) as pebble:
        yield pebble
