"""The ACME rate-limit budget in plan: counted per registered domain and per set of names."""

from __future__ import annotations

import json

import pytest

from gitcert.budget import registered_domain
from tests.conftest import CertRepo

ACME = """\
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: le}
spec:
  acme:
    server: https://127.0.0.1:1/dir
    privateKeySecretRef: {name: le-account}
    solvers:
      - http01: {standalone: {port: 8080}}
"""


def certificate(name: str, names: list[str]) -> str:
    return (
        f"---\napiVersion: cert-manager.io/v1\nkind: Certificate\n"
        f"metadata: {{name: {name}, namespace: web}}\n"
        f"spec:\n  secretName: {name}-tls\n  dnsNames: {json.dumps(names)}\n"
        "  issuerRef: {name: le, kind: ClusterIssuer}\n"
    )


@pytest.mark.parametrize(
    ("name", "domain"),
    [
        ("www.example.com", "example.com"),
        ("a.b.example.co.uk", "example.co.uk"),
        ("*.apps.example.org", "example.org"),
        ("user.github.io", "user.github.io"),
    ],
    ids=["a .com name", "a public suffix of two labels", "a wildcard", "a private suffix"],
)
def test_registered_domain(name: str, domain: str) -> None:
    assert registered_domain(name) == domain


def limits(on_exceed: str) -> str:
    return (
        "apiVersion: gitcert.dev/v1alpha1\nkind: Config\nspec:\n  acmeLimits:\n"
        f"    certificatesPerRegisteredDomain: 3\n    duplicateCertificates: 1\n"
        f"    onExceed: {on_exceed}\n"
    )


def test_plan_fails_before_merge_when_a_limit_would_be_exceeded(cert_repo: CertRepo) -> None:
    cert_repo.write("gitcert.yaml", limits("fail"))
    manifests = ACME + "".join(certificate(f"s{i}", [f"s{i}.example.com"]) for i in range(4))
    cert_repo.write("manifests/acme.yaml", manifests + certificate("other", ["x.example.net"]))
    cert_repo.commit()

    result = cert_repo.gitcert("plan", "--format", "json")
    assert result.exit_code == 1
    plan = json.loads(result.stdout)
    message = (
        "ACME rate limit: example.com would get 4 certificates in 168h (4 planned, 0 issued "
        "recently); the limit is 3 per registered domain"
    )
    assert [f["message"] for f in plan["acmeBudget"]] == [message]
    assert result.stderr == f"error: {message}\n"


def test_plan_warns_by_default(cert_repo: CertRepo) -> None:
    cert_repo.write("gitcert.yaml", limits("warn"))
    twins = certificate("a", ["same.example.com"]) + certificate("b", ["same.example.com"])
    cert_repo.write("manifests/acme.yaml", ACME + twins)
    cert_repo.commit()

    result = cert_repo.gitcert("plan")
    assert result.exit_code == 0
    assert (
        "warning: ACME rate limit: same.example.com would get 2 certificates in 168h "
        "(2 planned, 0 issued recently); the limit is 1 for the same set of names"
    ) in result.output


def test_apply_places_no_order_over_a_failing_budget(cert_repo: CertRepo) -> None:
    cert_repo.write("gitcert.yaml", limits("fail"))
    manifests = ACME + "".join(certificate(f"s{i}", [f"s{i}.example.com"]) for i in range(4))
    cert_repo.write("manifests/acme.yaml", manifests)
    head = cert_repo.commit()

    result = cert_repo.gitcert("apply")
    assert result.exit_code == 1
    assert "the limit is 3 per registered domain (acmeLimits.onExceed: fail)" in result.output
    assert cert_repo.head() == head
