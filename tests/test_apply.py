"""End to end: manifests in a real git repo → plan → apply with the real sops binary → commit.

Each test builds a cert repo, runs the command line in-process with a pinned clock, and
checks what landed in git: exact plans and reasons, certificate fields, chain validity with
openssl, and that tls.key is encrypted and decrypts to the key of tls.crt.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gitcert import clock
from gitcert import sops as sops_module
from tests.conftest import BOOTSTRAP, NOW, CertRepo, git, leaf

LATER = "2026-06-01T18:00:01Z"  # past the renewal time of a 12h certificate issued at NOW


def secret(repo: CertRepo, namespace: str, name: str) -> dict[str, object]:
    document = yaml.safe_load(repo.show(f"HEAD:secrets/{namespace}/{name}.yaml"))
    assert isinstance(document, dict)
    return document


def plan_json(repo: CertRepo, now: str = NOW) -> dict[str, object]:
    result = repo.gitcert("plan", "--format", "json", now=now)
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert isinstance(document, dict)
    return document


def pending(plan: dict[str, object]) -> list[tuple[str, str, str]]:
    changes = plan["changes"]
    assert isinstance(changes, list)
    return [(c["object"], c["action"], c["reason"]) for c in changes if c["action"] != "none"]


def decrypt_key(repo: CertRepo, namespace: str, name: str) -> bytes:
    path = repo.path / f"secrets/{namespace}/{name}.yaml"
    result = subprocess.run(
        [sops_module.binary(), "decrypt", "--extract", '["stringData"]["tls.key"]', str(path)],
        capture_output=True,
        check=True,
    )
    return result.stdout


@pytest.fixture
def issued(cert_repo: CertRepo) -> CertRepo:
    """The bootstrap chain plus three leaves, applied once."""
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    cert_repo.write(
        "manifests/apps.yaml",
        leaf("web", "team-a", dnsNames=["web.example.test", "www.example.test"])
        + leaf(
            "client",
            "team-b",
            dnsNames=[],
            commonName="billing-client",
            usages=["client auth", "digital signature"],
        )
        + leaf("short", "team-a", duration="24h"),
    )
    cert_repo.commit("manifests")
    result = cert_repo.gitcert("apply")
    assert result.exit_code == 0, result.output
    return cert_repo


def test_first_apply_issues_the_bootstrap_chain_and_leaves(
    issued: CertRepo, tmp_path: Path
) -> None:
    assert issued.log()[0] == "gitcert: issue 4"
    message = issued.show("--format=%B --no-patch HEAD")
    assert "- issue Certificate/cert-manager/root-ca: SecretMissing" in message
    assert "- issue Certificate/team-a/web: SecretMissing" in message

    web = secret(issued, "team-a", "web-tls")
    assert web["type"] == "kubernetes.io/tls"
    data = web["stringData"]
    assert isinstance(data, dict)
    assert data["tls.key"].startswith("ENC[AES256_GCM,")
    assert "PRIVATE KEY" not in issued.show("HEAD:secrets/team-a/web-tls.yaml")

    leaf_cert = x509.load_pem_x509_certificate(data["tls.crt"].encode())
    san = leaf_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["web.example.test", "www.example.test"]
    assert leaf_cert.issuer.rfc4514_string() == "CN=Test Root CA"
    assert (leaf_cert.not_valid_after_utc - leaf_cert.not_valid_before_utc).days == 90

    key = serialization.load_pem_private_key(decrypt_key(issued, "team-a", "web-tls"), None)
    assert key.public_key() == leaf_cert.public_key()

    (tmp_path / "ca.pem").write_text(data["ca.crt"])
    (tmp_path / "leaf.pem").write_text(data["tls.crt"])
    verify = subprocess.run(
        # -attime: the clock of the run is pinned to NOW, so is the verification.
        [
            "openssl",
            "verify",
            "-attime",
            str(int(clock.parse_instant(NOW).timestamp())),
            "-CAfile",
            str(tmp_path / "ca.pem"),
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert verify.stdout.strip() == f"{tmp_path / 'leaf.pem'}: OK"


def test_annotations_follow_cert_manager(issued: CertRepo) -> None:
    metadata = secret(issued, "team-a", "web-tls")["metadata"]
    assert isinstance(metadata, dict)
    assert metadata["annotations"] == {
        "cert-manager.io/alt-names": "web.example.test,www.example.test",
        "cert-manager.io/certificate-name": "web",
        "cert-manager.io/common-name": "",
        "cert-manager.io/email-sans": "",
        "cert-manager.io/ip-sans": "",
        "cert-manager.io/issuer-group": "cert-manager.io",
        "cert-manager.io/issuer-kind": "ClusterIssuer",
        "cert-manager.io/issuer-name": "ca",
        "cert-manager.io/uri-sans": "",
    }


def test_client_certificate_carries_client_auth(issued: CertRepo) -> None:
    data = secret(issued, "team-b", "client-tls")["stringData"]
    assert isinstance(data, dict)
    cert = x509.load_pem_x509_certificate(data["tls.crt"].encode())
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.subject.rfc4514_string() == "CN=billing-client"


def test_status_shows_every_certificate_ready(issued: CertRepo) -> None:
    result = issued.gitcert("status", "--format", "json")
    rows = json.loads(result.output)
    assert [(r["certificate"], r["ready"]) for r in rows] == [
        ("Certificate/cert-manager/root-ca", True),
        ("Certificate/team-a/short", True),
        ("Certificate/team-a/web", True),
        ("Certificate/team-b/client", True),
    ]
    short = next(r for r in rows if r["name"] == "short")
    assert short["notAfter"] == "2026-06-02T12:00:00Z"
    assert short["renewalTime"] == "2026-06-02T00:00:00Z"  # half of a lifetime under 10 days


def test_second_apply_makes_no_commit(issued: CertRepo) -> None:
    head = issued.head()
    result = issued.gitcert("apply")
    assert result.exit_code == 0
    assert "No changes. 4 certificate(s) up to date." in result.output
    assert issued.head() == head
    assert git(issued.path, "status", "--porcelain") == ""


def test_changing_one_dns_name_reissues_only_that_certificate(issued: CertRepo) -> None:
    text = issued.read("manifests/apps.yaml").replace("www.example.test", "api.example.test")
    issued.write("manifests/apps.yaml", text)
    issued.commit("rename www to api")

    plan = plan_json(issued)
    assert pending(plan) == [("Certificate/team-a/web", "reissue", "SpecChanged")]
    change = next(c for c in plan["changes"] if c["name"] == "web")  # type: ignore[union-attr]
    assert (
        change["message"]
        == "changed since issuance: dnsNames (+api.example.test; -www.example.test)"
    )

    before = issued.head()
    assert issued.gitcert("apply").exit_code == 0
    changed = git(issued.path, "diff", "--name-only", before, "HEAD").split()
    assert changed == ["secrets/team-a/web-tls.yaml", "status/team-a/web.yaml"]
    assert pending(plan_json(issued)) == []


def test_moving_the_clock_past_a_renewal_time_renews_exactly_the_due(issued: CertRepo) -> None:
    assert pending(plan_json(issued, now="2026-06-01T23:59:59Z")) == []
    assert pending(plan_json(issued, now="2026-06-02T00:00:00Z")) == [
        ("Certificate/team-a/short", "renew", "RenewalDue")
    ]
    expired = pending(plan_json(issued, now="2026-06-02T12:00:00Z"))
    assert expired == [("Certificate/team-a/short", "renew", "Expired")]

    result = issued.gitcert("apply", now="2026-06-02T00:00:00Z")
    assert result.exit_code == 0
    status = yaml.safe_load(issued.show("HEAD:status/team-a/short.yaml"))["status"]
    assert status["revision"] == 2
    assert status["lastIssuanceReason"] == "RenewalDue"
    assert status["notBefore"] == "2026-06-02T00:00:00Z"
    assert status["renewalTime"] == "2026-06-02T12:00:00Z"


def test_secret_template_drift_is_repaired_without_reissuing(issued: CertRepo) -> None:
    before = secret(issued, "team-a", "web-tls")
    text = issued.read("manifests/apps.yaml").replace(
        "  secretName: web-tls\n",
        "  secretName: web-tls\n  secretTemplate:\n    labels: {tier: edge}\n",
    )
    issued.write("manifests/apps.yaml", text)
    issued.commit("label web")

    assert pending(plan_json(issued)) == [
        ("Certificate/team-a/web", "update-metadata", "SecretTemplateMismatch")
    ]
    assert issued.gitcert("apply").exit_code == 0
    after = secret(issued, "team-a", "web-tls")
    assert after["stringData"] == before["stringData"]
    assert after["sops"] == before["sops"]
    assert after["metadata"]["labels"] == {  # type: ignore[index]
        "controller.cert-manager.io/fao": "true",
        "tier": "edge",
    }
    # mac_only_encrypted: the edited clear fields leave the key decryptable.
    assert b"PRIVATE KEY" in decrypt_key(issued, "team-a", "web-tls")
    assert pending(plan_json(issued)) == []


def test_rotation_policy_never_keeps_the_key_across_renewal(cert_repo: CertRepo) -> None:
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    cert_repo.write(
        "manifests/app.yaml",
        leaf(
            "db",
            duration="24h",
            privateKey={"algorithm": "RSA", "size": 2048, "rotationPolicy": "Never"},
        ),
    )
    cert_repo.commit()
    assert cert_repo.gitcert("apply").exit_code == 0
    first = decrypt_key(cert_repo, "default", "db-tls")

    assert cert_repo.gitcert("apply", now="2026-06-02T00:00:00Z").exit_code == 0
    assert cert_repo.log()[0] == "gitcert: renew 1"
    assert decrypt_key(cert_repo, "default", "db-tls") == first


def test_key_spec_and_issuer_changes_are_reasons(issued: CertRepo) -> None:
    issued.write(
        "manifests/apps.yaml",
        leaf("web", "team-a", dnsNames=["web.example.test", "www.example.test"])
        + leaf(
            "client",
            "team-b",
            dnsNames=[],
            commonName="billing-client",
            usages=["client auth", "digital signature"],
            issuerRef={"name": "selfsigned", "kind": "ClusterIssuer"},
        )
        + leaf("short", "team-a", duration="24h", privateKey={"algorithm": "Ed25519"}),
    )
    issued.commit()
    plan = plan_json(issued)
    # The client now hangs off the SelfSigned issuer, so it sorts with the first level.
    assert pending(plan) == [
        ("Certificate/team-b/client", "reissue", "IssuerChanged"),
        ("Certificate/team-a/short", "reissue", "KeySpecChanged"),
    ]
    messages = {c["name"]: c["message"] for c in plan["changes"]}  # type: ignore[union-attr]
    assert messages["short"] == "the key is ECDSA-256, the spec asks for Ed25519"
    assert messages["client"] == (
        "issued by ClusterIssuer/ca, the spec now names ClusterIssuer/selfsigned"
    )


def test_a_ca_issuer_without_its_secret_is_a_validation_error(issued: CertRepo) -> None:
    issued.write(
        "manifests/other.yaml",
        """\
        apiVersion: cert-manager.io/v1
        kind: Issuer
        metadata: {name: own-ca, namespace: team-b}
        spec:
          ca: {secretName: root-ca-copy}
        """,
    )
    head = issued.commit()
    result = issued.gitcert("apply")
    assert result.exit_code == 1
    assert (
        "manifests/other.yaml:5: spec.ca.secretName: Secret team-b/root-ca-copy is neither in "
        "the repo nor written by any Certificate"
    ) in result.output
    assert issued.head() == head


def test_push_to_a_bare_remote(issued: CertRepo, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(issued.path, "remote", "add", "origin", str(remote))

    text = issued.read("manifests/apps.yaml").replace("www.example.test", "api.example.test")
    issued.write("manifests/apps.yaml", text)
    issued.commit()
    result = issued.gitcert("apply", "--push")
    assert result.exit_code == 0, result.output
    assert "Pushed refs/heads/main to origin main." in result.output
    assert git(remote, "rev-parse", "main").strip() == issued.head()


def test_a_plaintext_file_under_secrets_blocks_the_commit(issued: CertRepo) -> None:
    issued.write("secrets/team-a/leaked.yaml", "stringData:\n  tls.key: hunter2\n")
    text = issued.read("manifests/apps.yaml").replace("www.example.test", "api.example.test")
    issued.write("manifests/apps.yaml", text)
    head = issued.commit("oops")

    result = issued.gitcert("apply")
    assert result.exit_code == 1
    assert "refusing to commit: secrets/team-a/leaked.yaml is not SOPS-encrypted" in result.output
    assert issued.head() == head


def test_failed_issuance_backs_off_and_a_spec_change_retries_at_once(cert_repo: CertRepo) -> None:
    # A self-signed CA without a subject cannot be signed: a permanent failure.
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    victim = leaf("victim", isCA=True, issuerRef={"name": "selfsigned", "kind": "ClusterIssuer"})
    cert_repo.write("manifests/bad.yaml", victim)
    cert_repo.commit()
    result = cert_repo.gitcert("apply")
    assert result.exit_code == 1
    assert "a self-signed CA needs a subject: set commonName" in result.output
    status = yaml.safe_load(cert_repo.show("HEAD:status/default/victim.yaml"))["status"]
    assert status["failedIssuanceAttempts"] == 1
    assert status["lastFailureTime"] == NOW
    assert status["retryAfter"] == "2026-06-01T13:00:00Z"

    assert pending(plan_json(cert_repo, now="2026-06-01T12:59:59Z")) == [
        ("Certificate/default/victim", "wait", "SecretMissing")
    ]
    assert pending(plan_json(cert_repo, now="2026-06-01T13:00:00Z")) == [
        ("Certificate/default/victim", "issue", "SecretMissing")
    ]
    assert cert_repo.gitcert("apply", now="2026-06-01T13:00:00Z").exit_code == 1
    status = yaml.safe_load(cert_repo.show("HEAD:status/default/victim.yaml"))["status"]
    assert status["failedIssuanceAttempts"] == 2
    assert status["retryAfter"] == "2026-06-01T15:00:00Z"

    text = cert_repo.read("manifests/bad.yaml").replace(
        "victim.example.test", "victim2.example.test"
    )
    cert_repo.write("manifests/bad.yaml", text)
    cert_repo.commit()
    assert pending(plan_json(cert_repo, now="2026-06-01T13:00:01Z")) == [
        ("Certificate/default/victim", "issue", "SecretMissing")
    ]


def test_plan_detailed_exit_code(issued: CertRepo) -> None:
    assert issued.gitcert("plan", "--detailed-exitcode").exit_code == 0
    result = issued.gitcert("plan", "--detailed-exitcode", now="2026-06-02T00:00:00Z")
    assert result.exit_code == 2


def test_logs_never_carry_private_keys(
    cert_repo: CertRepo, capfd: pytest.CaptureFixture[str]
) -> None:
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP + leaf("web"))
    cert_repo.commit()
    result = cert_repo.gitcert("-vv", "apply")
    assert result.exit_code == 0
    captured = capfd.readouterr()
    everything = result.output + captured.out + captured.err
    assert "Certificate/default/web: issue done (SecretMissing)" in everything
    assert "PRIVATE KEY" not in everything
    assert "AGE-SECRET-KEY" not in everything


def test_a_missing_age_key_stops_the_run_without_a_backoff(
    issued: CertRepo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    issued.write("manifests/more.yaml", leaf("api", "team-a"))
    head = issued.commit("one more")

    # The CA's key cannot be decrypted: a set-up problem, not the certificate's failure.
    key_file = os.environ["SOPS_AGE_KEY_FILE"]
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(tmp_path / "nowhere.txt"))
    result = issued.gitcert("apply")
    assert result.exit_code == 1
    assert "sops could not decrypt secrets/cert-manager/root-ca.yaml (exit 128)" in result.output
    assert issued.head() == head
    assert git(issued.path, "status", "--porcelain") == ""

    monkeypatch.setenv("SOPS_AGE_KEY_FILE", key_file)
    assert issued.gitcert("apply").exit_code == 0
    assert issued.log()[0] == "gitcert: issue 1"


def test_leaves_of_a_failed_ca_are_skipped_without_a_backoff(cert_repo: CertRepo) -> None:
    # The CA cannot be self-signed (a CA with an empty subject); its leaf is not attempted.
    broken = BOOTSTRAP.replace("  commonName: Test Root CA\n", "  dnsNames: [ca.example.test]\n")
    cert_repo.write("manifests/pki.yaml", broken + leaf("web"))
    cert_repo.commit()
    result = cert_repo.gitcert("apply")
    assert result.exit_code == 1
    assert "a self-signed CA needs a subject: set commonName" in result.output
    assert "skipped: its CA Certificate/cert-manager/root-ca failed in this run" in result.output
    files = git(cert_repo.path, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert "status/cert-manager/root-ca.yaml" in files
    assert "status/default/web.yaml" not in files


def test_a_ca_issuer_over_a_non_ca_certificate_is_refused_at_validate(cert_repo: CertRepo) -> None:
    cert_repo.write(
        "manifests/pki.yaml",
        BOOTSTRAP
        + leaf("not-a-ca", "cert-manager")
        + "---\napiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {name: bogus}\n"
        + "spec:\n  ca:\n    secretName: not-a-ca-tls\n",
    )
    cert_repo.commit()
    result = cert_repo.gitcert("validate")
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        "error: manifests/pki.yaml:46: spec.ca.secretName: Secret cert-manager/not-a-ca-tls is "
        "written by Certificate/cert-manager/not-a-ca, which is not a CA (set isCA: true on it)"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "  secretsPath: ../outside\n",
            "spec.secretsPath: '../outside' must be a relative path inside the repo",
        ),
        ("  manifests: [/etc]\n", "spec.manifests: '/etc' must be a relative path inside the repo"),
    ],
    ids=["secrets outside the repo", "manifests at an absolute path"],
)
def test_config_paths_stay_inside_the_repo(cert_repo: CertRepo, config: str, message: str) -> None:
    cert_repo.write(
        "gitcert.yaml", "apiVersion: gitcert.dev/v1alpha1\nkind: Config\nspec:\n" + config
    )
    cert_repo.commit()
    result = cert_repo.gitcert("plan")
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == f"error: gitcert.yaml:4: {message}"


def test_secret_template_label_keys_must_be_kubernetes_label_keys(cert_repo: CertRepo) -> None:
    cert_repo.write(
        "manifests/pki.yaml",
        BOOTSTRAP + leaf("web", secretTemplate={"labels": {"bad label!": "x"}}),
    )
    cert_repo.commit()
    result = cert_repo.gitcert("validate")
    assert result.exit_code == 1
    assert "spec.secretTemplate.labels: 'bad label!' is not a valid name" in result.output


def test_init_refuses_a_malformed_age_recipient(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from gitcert.cli import cli

    result = CliRunner().invoke(cli, ["init", str(tmp_path / "new"), "--age-recipient", "age1nope"])
    assert result.exit_code == 1
    assert "'age1nope' is not an age recipient (age1...)" in result.output
    assert not (tmp_path / "new").exists()


def test_uncommitted_manifest_edits_are_found(issued: CertRepo) -> None:
    from gitcert import gitops

    issued.write("manifests/apps.yaml", issued.read("manifests/apps.yaml") + "\n")
    issued.write("manifests/new.yaml", leaf("extra"))
    repo = gitops.open_repo(issued.path)
    assert gitops.uncommitted(repo, ("manifests", "gitcert.yaml")) == [
        "manifests/apps.yaml",
        "manifests/new.yaml",
    ]


def test_a_ca_renamed_with_its_key_kept_still_takes_its_leaves_along(cert_repo: CertRepo) -> None:
    keep_key = BOOTSTRAP.replace(
        "  duration: 8760h\n", "  duration: 8760h\n  privateKey: {rotationPolicy: Never}\n"
    )
    cert_repo.write("manifests/pki.yaml", keep_key + leaf("web"))
    cert_repo.commit()
    assert cert_repo.gitcert("apply").exit_code == 0

    cert_repo.write(
        "manifests/pki.yaml", keep_key.replace("Test Root CA", "Test Root CA G2") + leaf("web")
    )
    cert_repo.commit()
    plan = plan_json(cert_repo)
    assert pending(plan) == [
        ("Certificate/cert-manager/root-ca", "reissue", "SpecChanged"),
        ("Certificate/default/web", "reissue", "IssuerRotated"),
    ]
    web = next(c for c in plan["changes"] if c["name"] == "web")  # type: ignore[union-attr]
    assert (
        web["message"] == "its CA Certificate/cert-manager/root-ca is reissued with a new subject"
    )

    assert cert_repo.gitcert("apply").exit_code == 0
    data = secret(cert_repo, "default", "web-tls")["stringData"]
    assert isinstance(data, dict)
    leaf_cert = x509.load_pem_x509_certificate(data["tls.crt"].encode())
    leaf_cert.verify_directly_issued_by(x509.load_pem_x509_certificate(data["ca.crt"].encode()))
    assert leaf_cert.issuer.rfc4514_string() == "CN=Test Root CA G2"


def test_revoking_twice_is_refused_and_a_compromised_key_is_never_reused(
    cert_repo: CertRepo,
) -> None:
    from dataclasses import replace as with_

    from gitcert.model import ObjectKey
    from gitcert.state import parse_status, render_status

    never = leaf("db", privateKey={"rotationPolicy": "Never"})
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP + never)
    cert_repo.commit()
    assert cert_repo.gitcert("apply").exit_code == 0

    # The CA issuer cannot revoke; record a keyCompromise revocation as an ACME one would.
    status = parse_status(cert_repo.show("HEAD:status/default/db.yaml").encode())
    assert status is not None
    revoked = with_(status, revoked_serial=status.serial_number, revocation_reason="keyCompromise")
    key = ObjectKey("Certificate", "default", "db")
    cert_repo.write("status/default/db.yaml", render_status(key, revoked))
    cert_repo.commit("db was revoked as compromised")

    result = cert_repo.gitcert("revoke", "db")
    assert result.exit_code == 1
    assert "was already revoked (keyCompromise); apply reissues it" in result.output

    before = decrypt_key(cert_repo, "default", "db-tls")
    assert pending(plan_json(cert_repo)) == [("Certificate/default/db", "reissue", "Revoked")]
    assert cert_repo.gitcert("apply").exit_code == 0
    assert decrypt_key(cert_repo, "default", "db-tls") != before
