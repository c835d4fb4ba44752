"""Trust bundles: strict sources, de-duplication, deterministic targets, and a CA rotation.

All certificates are made at run time; the trust stores are read back with cryptography,
pyjks and openssl.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jks
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from gitcert import bundles
from gitcert.bundles import SourceError, parse_certificates
from gitcert.model import (
    BundleSource,
    BundleSpec,
    BundleTarget,
    Config,
    DesiredState,
    Source,
    TrustStore,
)
from tests.conftest import BOOTSTRAP, CertRepo, git, leaf

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)


def make_ca(name: str, days: int = 365, ca: bool = True, start: datetime = T0) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def bundle(*sources: BundleSource, **target: object) -> BundleSpec:
    return BundleSpec(
        name="trust",
        source=Source("manifests/trust.yaml", 1),
        sources=sources,
        target=BundleTarget(config_map_key="ca.crt", **target),  # type: ignore[arg-type]
    )


def inline(*certs: x509.Certificate) -> BundleSource:
    return BundleSource(kind="inLine", text=pem(*certs))


DESIRED = DesiredState(
    config=Config(), certificates=(), issuers={}, namespaces={"team-a": {}, "team-b": {}}
)


def nothing(path: str) -> bytes | None:
    return None


def built(spec: BundleSpec, now: datetime = T0) -> list[x509.Certificate]:
    return bundles.build(spec, DESIRED, nothing, now).certificates


WHERE = "manifests/trust.yaml:1: Bundle trust spec.sources[1] (inLine)"


def test_duplicates_across_sources_collapse_and_order_is_by_hash() -> None:
    a, b, c = make_ca("A"), make_ca("B"), make_ca("C")
    certificates = built(bundle(inline(a, b, a), inline(c, b)))
    assert [bundles.fingerprint(x) for x in certificates] == sorted(
        bundles.fingerprint(x) for x in (a, b, c)
    )


def test_permuted_sources_render_identical_bytes() -> None:
    a, b, c = make_ca("A"), make_ca("B"), make_ca("C")
    stores = {"jks": TrustStore("t.jks", "changeit"), "pkcs12": TrustStore("t.p12", "")}
    first = bundle(inline(a), inline(b, c), **stores)
    second = bundle(inline(c), inline(a, b), **stores)
    render = lambda spec: bundles.render(spec, bundles.build(spec, DESIRED, nothing, T0), DESIRED)  # noqa: E731
    assert render(first) == render(second)
    assert sorted(render(first)) == ["bundles/team-a/trust.yaml", "bundles/team-b/trust.yaml"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
            f"{WHERE}: holds a PRIVATE KEY block; a bundle takes only certificates",
        ),
        (
            "-----BEGIN TRUSTED CERTIFICATE-----\nMIIB\n-----END TRUSTED CERTIFICATE-----\n",
            f"{WHERE}: holds a TRUSTED CERTIFICATE block (OpenSSL's trust format); "
            "convert it with `openssl x509 -in FILE` to a plain CERTIFICATE",
        ),
        (
            "just text\n",
            "manifests/trust.yaml:1: Bundle trust spec.sources[1] (inLine): holds no certificate",
        ),
    ],
    ids=["a pasted private key", "OpenSSL's trusted certificate", "no certificate at all"],
)
def test_a_bad_source_fails_naming_itself(text: str, message: str) -> None:
    with pytest.raises(SourceError) as error:
        built(bundle(inline(make_ca("A")), BundleSource(kind="inLine", text=text)))
    assert str(error.value) == message


def test_crlf_text_between_blocks_and_no_final_newline_are_tolerated() -> None:
    a, b = make_ca("A"), make_ca("B")
    text = "leading words\r\n" + pem(a).replace("\n", "\r\n") + "between\n" + pem(b).rstrip("\n")
    assert {bundles.fingerprint(c) for c in parse_certificates(text, "x")} == {
        bundles.fingerprint(a),
        bundles.fingerprint(b),
    }


def test_expired_and_non_ca_certificates_are_kept_unless_filtered() -> None:
    old = make_ca("Old", days=1, start=T0 - timedelta(days=30))
    plain = make_ca("Leaf", ca=False)
    good = make_ca("Good")
    assert len(built(bundle(inline(old), inline(plain), inline(good)))) == 3

    spec = BundleSpec(
        name="trust",
        source=Source("manifests/trust.yaml", 1),
        sources=(inline(old), inline(plain), inline(good)),
        target=BundleTarget(config_map_key="ca.crt"),
        exclude_expired=True,
        exclude_non_ca=True,
    )
    result = bundles.build(spec, DESIRED, nothing, T0)
    assert result.certificates == [good]
    assert result.notes == [
        "manifests/trust.yaml:1: Bundle trust spec.sources[0] (inLine) holds only expired "
        "certificates"
    ]


def test_an_empty_result_is_an_error() -> None:
    old = make_ca("Old", days=1, start=T0 - timedelta(days=30))
    spec = BundleSpec(
        name="trust",
        source=Source("manifests/trust.yaml", 1),
        sources=(inline(old),),
        target=BundleTarget(config_map_key="ca.crt"),
        exclude_expired=True,
    )
    with pytest.raises(SourceError) as error:
        bundles.build(spec, DESIRED, nothing, T0)
    assert str(error.value) == (
        "Bundle trust: no certificate is left (manifests/trust.yaml:1: Bundle trust "
        "spec.sources[0] (inLine) holds only "
        "expired certificates); its targets are kept as they are"
    )


def test_trust_stores_load_with_cryptography_pyjks_and_openssl(tmp_path: Path) -> None:
    a, b = make_ca("A"), make_ca("B")
    certs = sorted([a, b], key=bundles.fingerprint)

    passwordless = bundles.pkcs12_store(certs, TrustStore("t.p12", ""))
    assert passwordless == bundles.pkcs12_store(certs, TrustStore("t.p12", ""))
    loaded = pkcs12.load_pkcs12(passwordless, None)
    assert [c.certificate for c in loaded.additional_certs] == certs
    (tmp_path / "t.p12").write_bytes(passwordless)
    shown = subprocess.run(
        ["openssl", "pkcs12", "-in", str(tmp_path / "t.p12"), "-nokeys", "-passin", "pass:"],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("-----BEGIN CERTIFICATE-----") == 2

    locked = bundles.pkcs12_store(certs, TrustStore("t.p12", "s3cret"))
    assert [c.certificate for c in pkcs12.load_pkcs12(locked, b"s3cret").additional_certs] == certs

    store = bundles.jks_store(certs, "changeit")
    assert store == bundles.jks_store(certs, "changeit")
    keystore = jks.KeyStore.loads(store, "changeit")
    assert sorted(keystore.certs) == sorted(bundles.fingerprint(c) for c in certs)
    entry = keystore.certs[bundles.fingerprint(a)]
    assert x509.load_der_x509_certificate(entry.cert) == a
    assert entry.timestamp == int(a.not_valid_before_utc.timestamp() * 1000)


ROTATING_BUNDLE = """\
---
apiVersion: trust.cert-manager.io/v1alpha1
kind: Bundle
metadata: {name: trust}
spec:
  sources:
    - secret: {name: root-ca, key: ca.crt, keepPreviousUntil: "2026-07-01T00:00:00Z"}
  target:
    configMap: {key: ca.crt}
"""


def held_serials(repo: CertRepo, namespace: str) -> set[str]:
    document = yaml.safe_load(repo.show(f"HEAD:bundles/{namespace}/trust.yaml"))
    certs = x509.load_pem_x509_certificates(document["data"]["ca.crt"].encode())
    return {format(c.serial_number, "x") for c in certs}


def test_a_ca_rotation_in_one_apply(cert_repo: CertRepo) -> None:
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP + leaf("web", "team-a") + ROTATING_BUNDLE)
    cert_repo.commit()
    assert cert_repo.gitcert("apply").exit_code == 0
    first_root = yaml.safe_load(cert_repo.show("HEAD:status/cert-manager/root-ca.yaml"))["status"]
    first_secret = yaml.safe_load(cert_repo.show("HEAD:secrets/cert-manager/root-ca.yaml"))
    first_root_cert = x509.load_pem_x509_certificate(first_secret["stringData"]["ca.crt"].encode())

    # A new root: its subject changes, so it is reissued, with a new key (rotation Always).
    cert_repo.write(
        "manifests/pki.yaml",
        BOOTSTRAP.replace("Test Root CA", "Test Root CA 2")
        + leaf("web", "team-a")
        + ROTATING_BUNDLE,
    )
    cert_repo.commit()
    plan = json.loads(cert_repo.gitcert("plan", "--format", "json").output)
    assert [
        (c["name"], c["action"], c["reason"]) for c in plan["changes"] if c["action"] != "none"
    ] == [
        ("root-ca", "reissue", "SpecChanged"),
        ("web", "reissue", "IssuerRotated"),
    ]
    result = cert_repo.gitcert("apply")
    assert result.exit_code == 0, result.output

    second_root = yaml.safe_load(cert_repo.show("HEAD:status/cert-manager/root-ca.yaml"))["status"]
    web = yaml.safe_load(cert_repo.show("HEAD:secrets/team-a/web-tls.yaml"))["stringData"]
    leaf_cert = x509.load_pem_x509_certificate(web["tls.crt"].encode())
    new_root = x509.load_pem_x509_certificate(web["ca.crt"].encode())
    leaf_cert.verify_directly_issued_by(new_root)
    assert format(new_root.serial_number, "x") == second_root["serialNumber"]

    assert held_serials(cert_repo, "team-a") == {
        first_root["serialNumber"],
        second_root["serialNumber"],
    }

    # After the overlap, the old root drops out, and the plan names it.
    after = "2026-07-01T00:00:01Z"
    plan = json.loads(cert_repo.gitcert("plan", "--format", "json", now=after).output)
    old = {"subject": "CN=Test Root CA", "sha256": bundles.fingerprint(first_root_cert)}
    assert [(b["path"], b["action"], b["removed"], b["added"]) for b in plan["bundles"]] == [
        (path, "update-bundle", [old], [])
        for path in ("bundles/cert-manager/trust.yaml", "bundles/team-a/trust.yaml")
    ]
    assert cert_repo.gitcert("apply", now=after).exit_code == 0
    assert held_serials(cert_repo, "team-a") == {second_root["serialNumber"]}
    assert "No changes" in cert_repo.gitcert("plan", now=after).output


def test_validate_passes_a_bundle_over_a_ca_not_issued_yet_and_fails_a_pasted_key(
    cert_repo: CertRepo,
) -> None:
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP + ROTATING_BUNDLE)
    cert_repo.commit()
    result = cert_repo.gitcert("validate")
    assert result.exit_code == 0, result.output

    pasted = (
        "    - inLine: |\n        -----BEGIN EC PRIVATE KEY-----\n        MHcC\n"
        "        -----END EC PRIVATE KEY-----\n"
    )
    cert_repo.write(
        "manifests/pki.yaml",
        BOOTSTRAP + ROTATING_BUNDLE.replace("  target:\n", pasted + "  target:\n"),
    )
    cert_repo.commit()
    result = cert_repo.gitcert("validate")
    assert result.exit_code == 1
    assert (
        "spec.sources[1] (inLine): holds an EC PRIVATE KEY block; a bundle takes only certificates"
    ) in result.output


def test_targets_no_bundle_wants_are_deleted(cert_repo: CertRepo) -> None:
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP + leaf("web", "team-a") + ROTATING_BUNDLE)
    cert_repo.commit()
    assert cert_repo.gitcert("apply").exit_code == 0
    files = git(cert_repo.path, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert "bundles/team-a/trust.yaml" in files

    # Select only labelled namespaces: team-a is not labelled, so its target goes.
    labelled = ROTATING_BUNDLE.replace(
        "  target:\n", "  target:\n    namespaceSelector: {matchLabels: {trust: 'yes'}}\n"
    )
    cert_repo.write(
        "gitcert.yaml",
        "apiVersion: gitcert.dev/v1alpha1\nkind: Config\nspec:\n"
        "  namespaces: {cert-manager: {labels: {trust: 'yes'}}}\n",
    )
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP + leaf("web", "team-a") + labelled)
    cert_repo.commit()
    plan = json.loads(cert_repo.gitcert("plan", "--format", "json").output)
    assert [(b["path"], b["action"]) for b in plan["bundles"]] == [
        ("bundles/team-a/trust.yaml", "delete-bundle")
    ]
    assert cert_repo.gitcert("apply").exit_code == 0
    files = git(cert_repo.path, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert "bundles/team-a/trust.yaml" not in files
    assert "bundles/cert-manager/trust.yaml" in files

    # The Bundle removed: its targets and its status record go too.
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP + leaf("web", "team-a"))
    cert_repo.commit()
    assert cert_repo.gitcert("apply").exit_code == 0
    files = git(cert_repo.path, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert [f for f in files if f.startswith(("bundles/", "status/_bundles/"))] == []
