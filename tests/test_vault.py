"""The Vault issuer against a real OpenBao dev server on loopback.

The server holds a root CA (``pki``), an intermediate it signed (``pki_int``) and a role
for subdomains of example.test; gitcert logs in with a token, an AppRole or a JWT shaped
like a GitHub Actions OIDC token. Certificates are checked the way a client would: the
chain must verify to the root that OpenBao generated, for the names requested.

Tokens, secret ids and JWTs live in memory and in the environment only: a Secret that
holds one is encrypted with sops from standard input before it touches the repo.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store

from gitcert import sops as gitcert_sops
from gitcert.issuers.vault import assemble
from gitcert.issuers.vault.adapter import SignedBundle
from gitcert.sops import Sops
from tests.conftest import BOOTSTRAP, CONFIG, CertRepo
from tests.vault_server import (
    JWT_ROLE,
    PKI_INT,
    ROLE,
    SIGN_PATH,
    OpenBao,
    VaultSetup,
    colon_serial,
    configure,
    github_claims,
    mint_jwt,
    revocation_time,
    start_openbao,
)

pytestmark = pytest.mark.openbao

INTERMEDIATE = "CN=gitcert Test Intermediate CA"
ROOT = "CN=gitcert Test Root CA"


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jwt_key() -> ec.EllipticCurvePrivateKey:
    """The key that signs our GitHub-like OIDC tokens; OpenBao trusts its public half."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    with start_openbao(tmp_path_factory.mktemp("openbao")) as server:
        yield server


@pytest.fixture(scope="module")
def setup(bao: OpenBao, jwt_key: ec.EllipticCurvePrivateKey) -> VaultSetup:
    return configure(bao, jwt_key.public_key(), f"gitcert-{os.urandom(8).hex()}")


@pytest.fixture(autouse=True)
def _no_vault_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the Vault variables it means to use, and no others."""
    for name in ("VAULT_ADDR", "VAULT_TOKEN", "BAO_ADDR", "BAO_TOKEN", "ACTIONS_ID_TOKEN"):
        monkeypatch.delenv(name, raising=False)


# --- helpers ------------------------------------------------------------------------------------


def vault_issuer(server: str, auth: dict[str, Any] | None = None, **extra: Any) -> str:
    spec: dict[str, Any] = {"server": server, "path": SIGN_PATH, **extra}
    if auth is not None:
        spec["auth"] = auth
    return _document("ClusterIssuer", {"name": "vault"}, {"vault": spec})


def certificate(name: str, dns_names: list[str], issuer: str = "vault", **extra: Any) -> str:
    spec = {
        "secretName": f"{name}-tls",
        "dnsNames": dns_names,
        "issuerRef": {"name": issuer, "kind": "ClusterIssuer"},
        **extra,
    }
    return _document("Certificate", {"name": name, "namespace": "web"}, spec)


def _document(kind: str, metadata: dict[str, str], spec: dict[str, Any]) -> str:
    body = {"apiVersion": "cert-manager.io/v1", "kind": kind, "metadata": metadata, "spec": spec}
    return "---\n" + yaml.safe_dump(body, sort_keys=False)


def sealed_secret(repo: CertRepo, name: str, values: dict[str, str]) -> None:
    """A Secret in cert-manager's namespace, encrypted by sops from stdin."""
    path = f"secrets/cert-manager/{name}.yaml"
    document = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "cert-manager"},
        "type": "Opaque",
        "stringData": values,
    }
    with Sops((repo.path / ".sops.yaml").read_bytes()) as sops:
        repo.write(path, sops.encrypt(yaml.safe_dump(document).encode(), path))


def apply(repo: CertRepo, now: str | None = None) -> Result:
    return repo.gitcert("apply", now=now)


def secret_values(repo: CertRepo, name: str) -> dict[str, str]:
    values: dict[str, str] = yaml.safe_load(repo.show(f"HEAD:secrets/web/{name}.yaml"))[
        "stringData"
    ]
    return values


def has_secret(repo: CertRepo, name: str) -> bool:
    probe = ["git", "cat-file", "-e", f"HEAD:secrets/web/{name}.yaml"]
    return subprocess.run(probe, cwd=repo.path, capture_output=True).returncode == 0


def status(repo: CertRepo, name: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(repo.show(f"HEAD:status/web/{name}.yaml"))["status"]
    return body


def plan(repo: CertRepo, now: str | None = None) -> list[tuple[str, str, str, str]]:
    result = repo.gitcert("plan", "--format", "json", now=now)
    return [
        (c["name"], c["action"], c["reason"], c["message"])
        for c in json.loads(result.output)["changes"]
        if c["action"] != "none"
    ]


def assert_chains_to(root_pem: str, values: dict[str, str], name: str) -> x509.Certificate:
    """tls.crt is the leaf and the intermediate, ca.crt is the root, and it verifies."""
    leaf, *intermediates = x509.load_pem_x509_certificates(values["tls.crt"].encode())
    root = x509.load_pem_x509_certificate(root_pem.encode())
    assert [c.subject.rfc4514_string() for c in intermediates] == [INTERMEDIATE]
    assert x509.load_pem_x509_certificate(values["ca.crt"].encode()) == root
    verifier = PolicyBuilder().store(Store([root])).build_server_verifier(x509.DNSName(name))
    path = verifier.verify(leaf, intermediates)
    assert [c.subject.rfc4514_string() for c in path] == [f"CN={leaf_cn(leaf)}", INTERMEDIATE, ROOT]
    return leaf


def leaf_cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- auth methods ---------------------------------------------------------------------------------


def test_token_auth_from_a_sops_secret_issues_a_chain_to_the_root(
    cert_repo: CertRepo, bao: OpenBao, setup: VaultSetup
) -> None:
    sealed_secret(cert_repo, "vault-token", {"token": setup.sign_token})
    cert_repo.write(
        "manifests/vault.yaml",
        vault_issuer(bao.url, {"tokenSecretRef": {"name": "vault-token"}})
        + certificate("shop", ["shop.example.test", "www.shop.example.test"]),
    )
    cert_repo.commit()

    result = apply(cert_repo)

    assert result.exit_code == 0, result.output
    values = secret_values(cert_repo, "shop-tls")
    leaf = assert_chains_to(setup.root_pem, values, "www.shop.example.test")
    assert leaf_cn(leaf) == "shop.example.test"
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["shop.example.test", "www.shop.example.test"]
    assert values["tls.key"].startswith("ENC[AES256_GCM,")
    assert status(cert_repo, "shop")["issuerDetails"] == {
        "vaultPath": SIGN_PATH,
        "vaultSerialNumber": colon_serial(leaf.serial_number),
        "vaultServer": bao.url,
    }

    head = cert_repo.head()
    again = apply(cert_repo)
    assert again.exit_code == 0 and "No changes" in again.output
    assert cert_repo.head() == head


def test_approle_auth_with_the_secret_id_from_a_sops_secret(
    cert_repo: CertRepo, bao: OpenBao, setup: VaultSetup
) -> None:
    sealed_secret(cert_repo, "vault-approle", {"secretId": setup.secret_id})
    approle = {"path": "approle", "roleId": setup.role_id, "secretRef": {"name": "vault-approle"}}
    cert_repo.write(
        "manifests/vault.yaml",
        vault_issuer(bao.url, {"appRole": approle}) + certificate("api", ["api.example.test"]),
    )
    cert_repo.commit()

    result = apply(cert_repo)

    assert result.exit_code == 0, result.output
    assert_chains_to(setup.root_pem, secret_values(cert_repo, "api-tls"), "api.example.test")


@pytest.mark.parametrize("source", ["tokenEnv", "tokenFile"])
def test_jwt_auth_with_a_github_actions_like_token(
    cert_repo: CertRepo,
    bao: OpenBao,
    setup: VaultSetup,
    jwt_key: ec.EllipticCurvePrivateKey,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    token = mint_jwt(jwt_key, github_claims())
    if source == "tokenEnv":
        monkeypatch.setenv("ACTIONS_ID_TOKEN", token)
        where = "ACTIONS_ID_TOKEN"
    else:
        # A pipe, so the token is never on disk: gitcert reads it as /dev/fd/N.
        read, write = os.pipe()
        os.write(write, token.encode())
        os.close(write)
        where = f"/dev/fd/{read}"
    cert_repo.write(
        "manifests/vault.yaml",
        vault_issuer(bao.url, {"jwt": {"role": JWT_ROLE, source: where}})
        + certificate("ci", ["ci.example.test"]),
    )
    cert_repo.commit()

    try:
        result = apply(cert_repo)
    finally:
        if source == "tokenFile":
            os.close(read)

    assert result.exit_code == 0, result.output
    assert_chains_to(setup.root_pem, secret_values(cert_repo, "ci-tls"), "ci.example.test")


def test_a_jwt_for_another_branch_is_refused_naming_the_auth_method(
    cert_repo: CertRepo,
    bao: OpenBao,
    setup: VaultSetup,
    jwt_key: ec.EllipticCurvePrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    claims = github_claims(ref="refs/heads/feature", sub="repo:acme/certs:ref:refs/heads/feature")
    monkeypatch.setenv("ACTIONS_ID_TOKEN", mint_jwt(jwt_key, claims))
    cert_repo.write(
        "manifests/vault.yaml",
        vault_issuer(bao.url, {"jwt": {"role": JWT_ROLE, "tokenEnv": "ACTIONS_ID_TOKEN"}})
        + certificate("ci", ["ci.example.test"]),
    )
    cert_repo.commit()

    result = apply(cert_repo)

    assert result.exit_code == 1
    message = (
        "Vault login with jwt auth at auth/jwt as role certs (token from $ACTIONS_ID_TOKEN) "
        'failed: error validating claims: claim "ref" does not match any associated bound '
        "claim values"
    )
    assert status(cert_repo, "ci")["lastFailureMessage"] == message
    assert not has_secret(cert_repo, "ci-tls")


def test_permission_denied_names_the_auth_method(
    cert_repo: CertRepo, bao: OpenBao, setup: VaultSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    weak = bao.client().auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]
    monkeypatch.setenv("VAULT_TOKEN", weak)
    cert_repo.write(
        "manifests/vault.yaml", vault_issuer(bao.url) + certificate("api", ["api.example.test"])
    )
    cert_repo.commit()

    result = apply(cert_repo)

    assert result.exit_code == 1
    assert status(cert_repo, "api")["lastFailureMessage"] == (
        "permission denied for token auth ($VAULT_TOKEN): may not sign at pki_int/sign/example-test"
    )


def test_without_auth_and_without_vault_token_the_failure_says_so(
    cert_repo: CertRepo, bao: OpenBao, setup: VaultSetup
) -> None:
    cert_repo.write(
        "manifests/vault.yaml", vault_issuer(bao.url) + certificate("api", ["api.example.test"])
    )
    head = cert_repo.commit()

    result = apply(cert_repo)

    # A set-up mistake: the run stops, nothing is committed, no backoff to wait out.
    assert result.exit_code == 1
    assert (
        "error: the Vault issuer ClusterIssuer/vault has no auth and $VAULT_TOKEN is not set"
        in result.output
    )
    assert cert_repo.head() == head


# --- what the role allows -----------------------------------------------------------------------


def test_a_name_the_role_forbids_fails_permanently_while_the_others_are_issued(
    cert_repo: CertRepo, bao: OpenBao, setup: VaultSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", setup.sign_token)
    manifests = vault_issuer(bao.url) + certificate("good", ["good.example.test"])
    cert_repo.write("manifests/vault.yaml", manifests + certificate("bad", ["bad.other.test"]))
    cert_repo.commit()

    result = apply(cert_repo)

    assert result.exit_code == 1
    refused = (
        "Vault refused to sign at pki_int/sign/example-test: "
        "common name bad.other.test not allowed by this role"
    )
    assert refused in result.output
    assert cert_repo.log()[0] == "gitcert: failed 1, issue 1"
    assert_chains_to(setup.root_pem, secret_values(cert_repo, "good-tls"), "good.example.test")
    assert not has_secret(cert_repo, "bad-tls")
    record = status(cert_repo, "bad")
    assert (record["failedIssuanceAttempts"], record["lastFailureMessage"]) == (1, refused)
    # No tight retry: the next attempt waits out the backoff, and plan says why.
    assert instant(record["retryAfter"]) == instant(record["lastFailureTime"]) + timedelta(hours=1)
    assert plan(cert_repo) == [
        (
            "bad",
            "wait",
            "SecretMissing",
            "Secret web/bad-tls does not exist; backing off after 1 failed attempt(s), "
            f"last: {refused}; next attempt after {record['retryAfter']}",
        )
    ]


def test_a_refused_change_keeps_the_certificate_already_issued(
    cert_repo: CertRepo, bao: OpenBao, setup: VaultSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", setup.sign_token)
    cert_repo.write(
        "manifests/vault.yaml", vault_issuer(bao.url) + certificate("web", ["web.example.test"])
    )
    cert_repo.commit()
    assert apply(cert_repo).exit_code == 0
    issued = cert_repo.show("HEAD:secrets/web/web-tls.yaml")
    serial = status(cert_repo, "web")["serialNumber"]

    cert_repo.write(
        "manifests/vault.yaml",
        vault_issuer(bao.url) + certificate("web", ["web.example.test", "web.other.test"]),
    )
    cert_repo.commit()
    result = apply(cert_repo)

    assert result.exit_code == 1
    assert cert_repo.show("HEAD:secrets/web/web-tls.yaml") == issued
    record = status(cert_repo, "web")
    assert record["serialNumber"] == serial
    assert record["lastFailureMessage"] == (
        "Vault refused to sign at pki_int/sign/example-test: "
        "subject alternate name web.other.test not allowed by this role"
    )


# --- OpenBao going away -------------------------------------------------------------------------


def test_openbao_down_is_a_temporary_failure_and_the_next_run_issues(
    cert_repo: CertRepo,
    tmp_path: Path,
    jwt_key: ec.EllipticCurvePrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = f"gitcert-{os.urandom(8).hex()}"
    monkeypatch.setenv("VAULT_TOKEN", token)
    cert_repo.write("manifests/local.yaml", BOOTSTRAP)
    with start_openbao(tmp_path / "bao-1") as first:
        configure(first, jwt_key.public_key(), token)
        issuer = vault_issuer(first.url)
        cert_repo.write(
            "manifests/vault.yaml", issuer + certificate("early", ["early.example.test"])
        )
        cert_repo.commit()
        assert apply(cert_repo).exit_code == 0
        port, root_token = first.port, first.root_token

    # OpenBao is gone; a new Certificate from it and one from the local CA are due.
    cert_repo.write(
        "manifests/vault.yaml",
        issuer
        + certificate("early", ["early.example.test"])
        + certificate("late", ["late.example.test"]),
    )
    cert_repo.write(
        "manifests/local.yaml", BOOTSTRAP + certificate("local", ["l.example.test"], "ca")
    )
    cert_repo.commit()
    down = apply(cert_repo)

    assert down.exit_code == 1
    unreachable = f"cannot reach Vault at http://127.0.0.1:{port}: Connection refused"
    assert unreachable in down.output
    assert cert_repo.log()[0] == "gitcert: failed 1, issue 1"
    assert not has_secret(cert_repo, "late-tls")
    assert has_secret(cert_repo, "local-tls")
    record = status(cert_repo, "late")
    assert (record["failedIssuanceAttempts"], record["lastFailureMessage"]) == (1, unreachable)
    retry = record["retryAfter"]
    assert instant(retry) == instant(record["lastFailureTime"]) + timedelta(hours=1)
    assert [(name, action) for name, action, _, _ in plan(cert_repo)] == [("late", "wait")]

    # Back on the same address (a dev server starts empty: configure it again), after
    # the backoff: the waiting certificate is issued, the others are left alone.
    with start_openbao(tmp_path / "bao-2", port=port, root_token=root_token) as second:
        again = configure(second, jwt_key.public_key(), token)
        result = apply(cert_repo, now=retry)

    assert result.exit_code == 0, result.output
    assert cert_repo.log()[0] == "gitcert: issue 1"
    assert_chains_to(again.root_pem, secret_values(cert_repo, "late-tls"), "late.example.test")
    assert "lastFailureMessage" not in status(cert_repo, "late")


def test_the_chain_is_rebuilt_from_the_leaf_by_signature(bao: OpenBao, setup: VaultSetup) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "c.example.test")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    answer = bao.client().secrets.pki.sign_certificate(
        ROLE, csr, "c.example.test", mount_point=PKI_INT
    )["data"]
    stranger = self_signed("CN=gitcert Test Intermediate CA")
    # Root first, a stranger with the intermediate's name in between: order and extras
    # from the server must not matter.
    shuffled = SignedBundle(
        certificate=answer["certificate"],
        issuing_ca="",
        ca_chain=(answer["ca_chain"][1], stranger, answer["ca_chain"][0]),
        serial_number=answer["serial_number"],
        warnings=(),
    )

    leaf, chain, anchor = assemble(shuffled)

    assert leaf == x509.load_pem_x509_certificate(answer["certificate"].encode())
    assert [c.subject.rfc4514_string() for c in chain] == [INTERMEDIATE]
    assert anchor == x509.load_pem_x509_certificate(setup.root_pem.encode())
    with pytest.raises(ValueError, match=r"^Vault returned CN=c.example.test without the CA"):
        assemble(replace(shuffled, ca_chain=(stranger,)))


def self_signed(subject: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_rfc4514_string(subject)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# --- revocation ---------------------------------------------------------------------------------


def test_revoke_goes_through_vault(
    cert_repo: CertRepo, bao: OpenBao, setup: VaultSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", setup.sign_token)
    cert_repo.write(
        "manifests/vault.yaml",
        vault_issuer(bao.url)
        + certificate("old", ["old.example.test"])
        + certificate("kept", ["kept.example.test"]),
    )
    cert_repo.commit()
    assert apply(cert_repo).exit_code == 0
    old = x509.load_pem_x509_certificate(secret_values(cert_repo, "old-tls")["tls.crt"].encode())
    kept = x509.load_pem_x509_certificate(secret_values(cert_repo, "kept-tls")["tls.crt"].encode())

    result = cert_repo.gitcert("revoke", "old", "--reason", "keyCompromise", now=None)

    assert result.exit_code == 0, result.output
    assert revocation_time(bao, old.serial_number) > 0
    assert revocation_time(bao, kept.serial_number) == 0
    crl = x509.load_pem_x509_crl(bao.client().secrets.pki.read_crl(mount_point=PKI_INT).encode())
    assert crl.get_revoked_certificate_by_serial_number(old.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(kept.serial_number) is None
    record = status(cert_repo, "old")
    assert (record["revokedSerialNumber"], record["revocationReason"]) == (
        format(old.serial_number, "x"),
        "keyCompromise",
    )
    assert [(n, a, r) for n, a, r, _ in plan(cert_repo)] == [("old", "reissue", "Revoked")]


# --- the server: namespace and TLS --------------------------------------------------------------


def test_the_namespace_header_reaches_a_pki_inside_a_namespace(
    cert_repo: CertRepo, bao: OpenBao, setup: VaultSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    bao.client().sys.create_namespace("team-a")
    inside = bao.client(namespace="team-a")
    inside.sys.enable_secrets_engine("pki", path="pki_team", config={"max_lease_ttl": "8760h"})
    root = inside.secrets.pki.generate_root(
        "internal",
        "Team A Root",
        extra_params={"key_type": "ec", "ttl": "8760h"},
        mount_point="pki_team",
    )["data"]["certificate"]
    role = {"allowed_domains": "example.test", "allow_subdomains": True, "key_type": "any"}
    inside.secrets.pki.create_or_update_role("web", role, mount_point="pki_team")
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    issuer = vault_issuer(bao.url, namespace="team-a", path="pki_team/sign/web")
    cert_repo.write("manifests/vault.yaml", issuer + certificate("team", ["team.example.test"]))
    cert_repo.commit()

    result = apply(cert_repo)

    assert result.exit_code == 0, result.output
    values = secret_values(cert_repo, "team-tls")
    leaf, *rest = x509.load_pem_x509_certificates(values["tls.crt"].encode())
    anchor = x509.load_pem_x509_certificate(root.encode())
    assert rest == []
    assert x509.load_pem_x509_certificate(values["ca.crt"].encode()) == anchor
    leaf.verify_directly_issued_by(anchor)


def test_https_with_the_ca_bundle_and_not_without(
    cert_repo: CertRepo,
    tmp_path: Path,
    jwt_key: ec.EllipticCurvePrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = f"gitcert-{os.urandom(8).hex()}"
    monkeypatch.setenv("VAULT_TOKEN", token)
    with start_openbao(tmp_path / "bao-tls", tls=True) as server:
        assert server.ca_pem is not None
        tls_setup = configure(server, jwt_key.public_key(), token)
        cert_repo.write(
            "manifests/vault.yaml",
            vault_issuer(server.url) + certificate("tls", ["tls.example.test"]),
        )
        cert_repo.commit()
        untrusted = apply(cert_repo)

        bundle = base64.b64encode(server.ca_pem.read_bytes()).decode()
        cert_repo.write(
            "manifests/vault.yaml",
            vault_issuer(server.url, caBundle=bundle) + certificate("tls", ["tls.example.test"]),
        )
        cert_repo.commit()
        trusted = apply(cert_repo)

    assert untrusted.exit_code == 1
    assert (
        f"cannot reach Vault at {server.url}: TLS failed: certificate verify failed: "
        "unable to get local issuer certificate"
    ) in untrusted.output
    # The issuer changed, so the backoff of the failure does not apply.
    assert trusted.exit_code == 0, trusted.output
    assert_chains_to(tls_setup.root_pem, secret_values(cert_repo, "tls-tls"), "tls.example.test")


# --- sops through Vault transit -----------------------------------------------------------------

TRANSIT_RULES = """\
stores:
  yaml:
    indent: 2
creation_rules:
  - path_regex: ^secrets/.*\\.ya?ml$
    unencrypted_regex: ^(apiVersion|kind|metadata|type|tls\\.crt|ca\\.crt)$
    mac_only_encrypted: true
    hc_vault_transit_uri: {url}/v1/transit/keys/sops
"""


def test_sops_through_vault_transit_end_to_end(
    tmp_path: Path, bao: OpenBao, setup: VaultSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No age key at all: the data keys are wrapped by OpenBao's transit engine.
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    monkeypatch.setenv("VAULT_ADDR", bao.url)
    monkeypatch.setenv("VAULT_TOKEN", setup.sign_token)
    repo = CertRepo(tmp_path / "transit", "unused")
    repo.write("gitcert.yaml", CONFIG)
    repo.write(".sops.yaml", TRANSIT_RULES.format(url=bao.url))
    repo.write(
        "manifests/pki.yaml",
        BOOTSTRAP
        + certificate("local", ["local.example.test"], "ca")
        + vault_issuer(bao.url)
        + certificate("remote", ["remote.example.test"]),
    )
    repo.commit()

    result = apply(repo)

    assert result.exit_code == 0, result.output
    assert repo.log()[0] == "gitcert: issue 3"
    for name in ("local-tls", "remote-tls"):
        document = yaml.safe_load(repo.show(f"HEAD:secrets/web/{name}.yaml"))
        (wrapped,) = document["sops"]["hc_vault"]
        assert (wrapped["vault_address"], wrapped["engine_path"], wrapped["key_name"]) == (
            bao.url,
            "transit",
            "sops",
        )
        assert wrapped["enc"].startswith("vault:v1:")
        assert "age" not in document["sops"]
        key = decrypt_key(repo, f"secrets/web/{name}.yaml", setup.sign_token)
        cert = x509.load_pem_x509_certificate(document["stringData"]["tls.crt"].encode())
        assert key.public_key() == cert.public_key()

    refused = sops_decrypt(repo, "secrets/web/remote-tls.yaml", "not-a-token")
    assert refused.returncode != 0
    assert "Failed to get the data key required to decrypt the SOPS file" in refused.stderr


def sops_decrypt(repo: CertRepo, path: str, token: str) -> subprocess.CompletedProcess[str]:
    """The sops binary itself, as a VM pulling the repo would run it."""
    argv = [gitcert_sops.binary(), "decrypt", "--extract", '["stringData"]["tls.key"]', path]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    env |= {"VAULT_TOKEN": token, "SOPS_DISABLE_VERSION_CHECK": "1"}
    return subprocess.run(argv, cwd=repo.path, env=env, capture_output=True, text=True)


def decrypt_key(repo: CertRepo, path: str, token: str) -> Any:
    done = sops_decrypt(repo, path, token)
    assert done.returncode == 0, done.stderr
    return serialization.load_pem_private_key(done.stdout.encode(), None)


# --- validate and plan --------------------------------------------------------------------------


def test_every_auth_method_validates(cert_repo: CertRepo) -> None:
    auths: list[dict[str, Any] | None] = [
        None,
        {"tokenSecretRef": {"name": "vault-token", "key": "token"}},
        {"appRole": {"path": "approle", "roleId": "r", "secretRef": {"name": "s"}}},
        {"jwt": {"path": "github", "role": "certs", "tokenEnv": "ACTIONS_ID_TOKEN"}},
        {"jwt": {"role": "certs", "tokenFile": "/var/run/secrets/token"}},
    ]
    documents = [
        vault_issuer(
            "https://vault.example.test:8200", auth, caBundle="Zm9v", namespace="a"
        ).replace("name: vault", f"name: vault-{i}")
        for i, auth in enumerate(auths)
    ]
    cert_repo.write("manifests/vault.yaml", "".join(documents))
    cert_repo.commit()

    result = cert_repo.gitcert("validate")

    assert (result.exit_code, result.stdout) == (
        0,
        "0 certificate(s), 5 issuer(s), 0 bundle(s) and 0 policy(ies) are valid.\n",
    )


def test_plan_never_imports_hvac(cert_repo: CertRepo) -> None:
    cert_repo.write(
        "manifests/vault.yaml",
        vault_issuer("https://vault.example.test:8200") + certificate("a", ["a.example.test"]),
    )
    cert_repo.commit()

    argv = [sys.executable, "-X", "importtime", "-m", "gitcert", "plan", "--repo", "."]
    done = subprocess.run(argv, cwd=cert_repo.path, capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()]
    assert "gitcert.issuers.vault" in imported
    assert [m for m in imported if m.startswith(("hvac", "gitcert.issuers.vault."))] == []
