#!/usr/bin/env python3
"""ACME issuance wall time against a real Pebble: one certificate, then fifty in one apply.

Usage: python benchmarks/acme_bench.py [--count 50] [--concurrency 8]

Starts pebble-challtestsrv and Pebble on free loopback ports (Debian package `pebble`),
makes a cert repo with an ACME ClusterIssuer (HTTP-01 standalone) and N Certificates, and
times `gitcert apply` as a subprocess. The age key is generated at run time in a private
temporary directory and removed with it.
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from pyrage import x25519

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gitcert.scaffold import SOPS_RULES  # noqa: E402
from tests.servers import free_port, start_challtestsrv, start_pebble  # noqa: E402


def make_repo(path: Path, recipient: str, pebble: object, count: int, concurrency: int) -> None:
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    config = (
        f"apiVersion: gitcert.dev/v1alpha1\nkind: Config\nspec:\n  concurrency: {concurrency}\n"
    )
    (path / "gitcert.yaml").write_text(config)
    (path / ".sops.yaml").write_text(SOPS_RULES.format(recipients=recipient))
    issuer = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": "pebble"},
        "spec": {
            "acme": {
                "server": pebble.directory_url,  # type: ignore[attr-defined]
                "caBundle": base64.b64encode(pebble.ca_pem.read_bytes()).decode(),  # type: ignore[attr-defined]
                "privateKeySecretRef": {"name": "pebble-account"},
                "solvers": [
                    {"http01": {"standalone": {"address": "127.0.0.1", "port": pebble.http_port}}}  # type: ignore[attr-defined]
                ],
            }
        },
    }
    documents = [issuer]
    for i in range(count):
        documents.append(
            {
                "apiVersion": "cert-manager.io/v1",
                "kind": "Certificate",
                "metadata": {"name": f"site{i}", "namespace": "bench"},
                "spec": {
                    "secretName": f"site{i}-tls",
                    "dnsNames": [f"site{i}.example.test"],
                    "issuerRef": {"name": "pebble", "kind": "ClusterIssuer"},
                },
            }
        )
    (path / "manifests").mkdir()
    (path / "manifests" / "acme.yaml").write_text(yaml.safe_dump_all(documents))
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@localhost",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@localhost"}  # fmt: skip
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(path), "commit", "-qm", "bench"], check=True, env=env)


def timed_apply(repo: Path, key_file: Path) -> float:
    env = {**os.environ, "SOPS_AGE_KEY_FILE": str(key_file)}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "gitcert", "apply", "--repo", str(repo)],
        capture_output=True,
        text=True,
        env=env,
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"apply failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gitcert-acme-bench-") as scratch:
        tmp = Path(scratch)
        identity = x25519.Identity.generate()
        key_file = tmp / "age.txt"
        key_file.write_text(f"{identity}\n")
        key_file.chmod(0o600)
        with (
            start_challtestsrv(tmp / "dns") as dns,
            start_pebble(tmp / "pebble", dns_port=dns.dns_port, http_port=free_port()) as pebble,
        ):
            results = []
            for count in (1, args.count):
                repo = tmp / f"repo-{count}"
                make_repo(repo, str(identity.to_public()), pebble, count, args.concurrency)
                results.append((count, timed_apply(repo, key_file)))

    print(f"{'certificates':>12}  {'apply wall time':>15}  {'per certificate':>15}")
    for count, seconds in results:
        print(f"{count:>12}  {seconds:>14.2f}s  {seconds / count:>14.2f}s")


if __name__ == "__main__":
    main()
