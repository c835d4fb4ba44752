"""Bad input gets a clear error at file, line and field, exit 1, and nothing is written.

Every case commits its manifests, runs a command, and checks the exact error lines on
stderr, the exit code, and (for every command, ``apply`` included) that the repository did
not move: same HEAD, clean work tree, no ``secrets/`` or ``status/``.

Line numbers in the expected errors refer to the manifests as committed. ``leaf()`` from
conftest lays a Certificate out like this, which the line numbers below rely on::

     1 ---
     2 apiVersion: cert-manager.io/v1
     3 kind: Certificate
     4 metadata:
     5   name: web
     6   namespace: team-a
     7 spec:
     8   secretName: web-tls
     9   dnsNames:
    10   - web.example.test
    11   issuerRef:
    12     name: ca
    13     kind: ClusterIssuer
    14   <the first extra spec field, if any>
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import Result
from conftest import BOOTSTRAP, CertRepo, git, leaf
from cryptography import x509

# --- helpers -------------------------------------------------------------------------------


class StartsWith:
    """Equal to any string that starts with ``prefix``.

    Used only where gitcert crashes today, so no message exists yet to pin exactly: the
    location and field are still asserted exactly.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StartsWith):
            return self.prefix == other.prefix
        return isinstance(other, str) and other.startswith(self.prefix)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StartsWith({self.prefix!r})"


Expected = str | StartsWith


def run(cert_repo: CertRepo, *args: str) -> Result:
    """Run gitcert; a crash (traceback) is a test failure, not a test error."""
    try:
        return cert_repo.gitcert(*args)
    except Exception as exc:
        pytest.fail(f"gitcert {args[0]} crashed instead of reporting: {exc!r}", pytrace=False)


def error_lines(expected: list[Expected]) -> list[Expected]:
    lines: list[Expected] = [
        StartsWith(f"error: {e.prefix}") if isinstance(e, StartsWith) else f"error: {e}"
        for e in expected
    ]
    return [*lines, f"{len(expected)} problem(s) found; nothing was written."]


def tree_files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".git" not in p.parts
    )


def issued_certificate(cert_repo: CertRepo, namespace: str, secret: str) -> x509.Certificate:
    body = yaml.safe_load(cert_repo.read(f"secrets/{namespace}/{secret}.yaml"))
    return x509.load_pem_x509_certificate(body["stringData"]["tls.crt"].encode())


def subject_alt_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return dns, ips


NO_CHANGES = "No changes. 2 certificate(s) up to date.\n"

# --- manifests -------------------------------------------------------------------------------

ISSUER_IN_TEAM_B = """\
apiVersion: cert-manager.io/v1
kind: Issuer
metadata:
  name: team-ca
  namespace: team-b
spec:
  selfSigned: {}
"""

# A CA ClusterIssuer whose Secret is written by a Certificate it issues itself.
SELF_SIGNING_LOOP = """\
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: loop
spec:
  ca:
    secretName: loop-ca
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: loop-ca
  namespace: cert-manager
spec:
  isCA: true
  commonName: Loop CA
  secretName: loop-ca
  issuerRef: {name: loop, kind: ClusterIssuer}
"""
SELF_SIGNING_LOOP_CHAIN = (
    "Certificate/cert-manager/loop-ca (issuer ClusterIssuer/loop) → "
    "Certificate/cert-manager/loop-ca (issuer ClusterIssuer/loop)"
)

# Two CA ClusterIssuers, each issuing the Certificate that holds the other's key pair.
TWO_CA_LOOP = """\
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: ca-a
spec:
  ca: {secretName: ca-a}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: ca-b
spec:
  ca: {secretName: ca-b}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: ca-a
  namespace: cert-manager
spec:
  isCA: true
  commonName: CA A
  secretName: ca-a
  issuerRef: {name: ca-b, kind: ClusterIssuer}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: ca-b
  namespace: cert-manager
spec:
  isCA: true
  commonName: CA B
  secretName: ca-b
  issuerRef: {name: ca-a, kind: ClusterIssuer}
"""
TWO_CA_LOOP_CHAIN = (
    "Certificate/cert-manager/ca-a (issuer ClusterIssuer/ca-b) → "
    "Certificate/cert-manager/ca-b (issuer ClusterIssuer/ca-a) → "
    "Certificate/cert-manager/ca-a (issuer ClusterIssuer/ca-b)"
)

NO_ISSUER_REF = """\
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: web
  namespace: team-a
spec:
  secretName: web-tls
  dnsNames: [web.example.test]
"""

BAD_INDENTATION = """\
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: web
    namespace: team-a
spec:
  secretName: web-tls
"""

NOT_UTF8 = (
    b"apiVersion: cert-manager.io/v1\n"
    b"kind: Certificate\n"
    b"metadata:\n"
    b"  name: web\n"
    b"  # caf\xe9, saved as Latin-1\n"
    b"  namespace: team-a\n"
)

CONTROL_CHARACTER = """\
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: "w\x0beb"
  namespace: team-a
spec: {}
"""

IMPOSSIBLE_DATE = """\
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: web
  labels: {expires: 2026-13-01}
spec: {}
"""

VAULT = """\
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: vault
spec:
  vault:
    server: https://vault.invalid
    path: pki/sign/web
"""

KNOWN_KINDS = (
    "known: cert-manager.io/v1 Certificate, cert-manager.io/v1 Issuer, "
    "cert-manager.io/v1 ClusterIssuer, gitcert.dev/v1alpha1 Config, "
    "trust.cert-manager.io/v1alpha1 Bundle, v1 ConfigMap, "
    "policy.cert-manager.io/v1alpha1 CertificateRequestPolicy"
)

SPEC_FIELDS = (
    "commonName, dnsNames, duration, emailAddresses, ipAddresses, isCA, issuerRef, "
    "literalSubject, privateKey, renewBefore, renewBeforePercentage, secretName, "
    "secretTemplate, subject, uris, usages"
)

DURATION_HINT = "expected e.g. 2160h, 1h30m or 90m"


def two_good_then(third: str) -> str:
    """Two valid Certificates (lines 1-14 and 15-28, each with spec.duration on its last
    line), then ``third`` from line 29 on."""
    return leaf("one", "team-a", duration="2160h") + leaf("two", "team-a", duration="2160h") + third


# Three documents with comments and blank lines between them: line numbers must count them.
THREE_WITH_COMMENTS = (
    "# Team A's certificates.\n"  # 1
    "\n"  # 2
    + leaf("one", "team-a", duration="2160h")  # 3-16, duration at 16
    + "\n"  # 17
    + "# The second one.\n"  # 18
    + leaf("two", "team-a", duration="2160h")  # 19-32, duration at 32
    + "--- # the third one\n"  # 33
    + "\n"  # 34
    + leaf("three", "team-a", duration="90d")[len("---\n") :]  # 35-47, duration at 47
)

# --- bad input -------------------------------------------------------------------------------

A = "manifests/team-a.yaml"

BAD = [
    pytest.param(
        {A: leaf("web", "team-a", colour="blue")},
        [f"{A}:14: spec.colour: unknown field (expected one of: {SPEC_FIELDS})"],
        id="an unknown field in a Certificate spec is named with the fields it could be",
    ),
    pytest.param(
        {A: leaf("web", "team-a", duration="90d")},
        [f"{A}:14: spec.duration: '90d' is not a duration; {DURATION_HINT}"],
        id="a duration in days (90d) is not a Go duration",
    ),
    pytest.param(
        {A: leaf("web", "team-a", duration="30m")},
        [f"{A}:14: spec.duration: must be at least 1h, got 30m"],
        id="a duration under 1h is too short",
    ),
    pytest.param(
        {A: leaf("web", "team-a", duration="0s")},
        [f"{A}:14: spec.duration: must be at least 1h, got 0s"],
        id="a zero duration is too short rather than silently the default",
    ),
    pytest.param(
        {A: leaf("web", "team-a", duration="\u0669\u0660h")},
        [f"{A}:14: spec.duration: '\u0669\u0660h' is not a duration; {DURATION_HINT}"],
        id="a duration in Arabic-Indic digits is not a Go duration",
    ),
    pytest.param(
        {A: leaf("web", "team-a", duration="100000000h")},
        [StartsWith(f"{A}:14: spec.duration: ")],
        id="a duration longer than Go can represent is an error not a crash",
    ),
    pytest.param(
        {A: leaf("web", "team-a", duration="1000000000000h")},
        [StartsWith(f"{A}:14: spec.duration: ")],
        id="a duration too large for a timedelta is an error not a crash",
    ),
    pytest.param(
        {A: leaf("web", "team-a", renewBefore="4m")},
        [f"{A}:14: spec.renewBefore: must be at least 5m, got 4m"],
        id="renewBefore under 5m is too short",
    ),
    pytest.param(
        {A: leaf("web", "team-a", duration="2h", renewBefore="2h")},
        [f"{A}:15: spec.renewBefore: must be less than duration (2h0m0s)"],
        id="renewBefore equal to the duration is too long",
    ),
    pytest.param(
        {A: leaf("web", "team-a", renewBefore="3000h")},
        [f"{A}:14: spec.renewBefore: must be less than duration (2160h0m0s)"],
        id="renewBefore longer than the default duration is too long",
    ),
    pytest.param(
        {A: leaf("web", "team-a", renewBefore="1h", renewBeforePercentage=50)},
        [f"{A}:14: spec.renewBefore: renewBefore and renewBeforePercentage are mutually exclusive"],
        id="renewBefore together with renewBeforePercentage is ambiguous",
    ),
    pytest.param(
        {A: leaf("web", "team-a", duration="1h", renewBeforePercentage=95)},
        [f"{A}:15: spec.renewBeforePercentage: leaves less than 5m before expiry for renewal"],
        id="renewBeforePercentage leaving under 5m before expiry is too late",
    ),
    pytest.param(
        {A: leaf("web", "team-a", commonName="c" * 65)},
        [f"{A}:14: spec.commonName: is 65 characters long; at most 64 are allowed"],
        id="a commonName over 64 characters is too long",
    ),
    pytest.param(
        {A: leaf("web", "team-a", dnsNames=[])},
        [
            f"{A}:7: spec: at least one identity is required: one of commonName, "
            "literalSubject, dnsNames, ipAddresses, uris, emailAddresses"
        ],
        id="a Certificate with no identity at all names nothing",
    ),
    pytest.param(
        {A: leaf("web", "team-a", issuerRef={"name": "nope", "kind": "ClusterIssuer"})},
        [f"{A}:12: spec.issuerRef.name: ClusterIssuer 'nope' is not defined in any manifest"],
        id="an issuerRef to an undefined ClusterIssuer",
    ),
    pytest.param(
        {A: leaf("web", "team-a", issuerRef={"name": "nope"})},
        [f"{A}:12: spec.issuerRef.name: Issuer 'nope' is not defined in namespace team-a"],
        id="an issuerRef to an Issuer undefined in the Certificate's namespace",
    ),
    pytest.param(
        {A: NO_ISSUER_REF},
        [f"{A}:6: spec.issuerRef: required field is missing"],
        id="a Certificate without an issuerRef",
    ),
    pytest.param(
        {
            "manifests/team-b.yaml": ISSUER_IN_TEAM_B,
            A: leaf("web", "team-a", issuerRef={"name": "team-ca", "kind": "Issuer"}),
        },
        [
            f"{A}:12: spec.issuerRef.name: Issuer 'team-ca' exists only in namespace team-b; an "
            "Issuer serves Certificates in its own namespace (team-a); use a ClusterIssuer to "
            "share one"
        ],
        id="an Issuer in another namespace is out of reach",
    ),
    pytest.param(
        {"manifests/loop.yaml": SELF_SIGNING_LOOP},
        [
            "manifests/loop.yaml:18: spec.issuerRef.name: dependency cycle: "
            + SELF_SIGNING_LOOP_CHAIN
        ],
        id="a CA issuer whose Secret comes from a Certificate it issues is a cycle",
    ),
    pytest.param(
        {"manifests/loop.yaml": TWO_CA_LOOP},
        [
            f"manifests/loop.yaml:24: spec.issuerRef.name: dependency cycle: {TWO_CA_LOOP_CHAIN}",
            f"manifests/loop.yaml:35: spec.issuerRef.name: dependency cycle: {TWO_CA_LOOP_CHAIN}",
        ],
        id="two CA issuers issuing each other's key pairs are a cycle reported on both",
    ),
    pytest.param(
        {
            A: leaf("web", "team-a", secretName="shared-tls")
            + leaf("api", "team-a", secretName="shared-tls")
        },
        [
            f"{A}:8: spec.secretName: Secret team-a/shared-tls is written by more than one "
            f"Certificate: Certificate/team-a/web ({A}:2), Certificate/team-a/api ({A}:15)",
            f"{A}:21: spec.secretName: Secret team-a/shared-tls is written by more than one "
            f"Certificate: Certificate/team-a/web ({A}:2), Certificate/team-a/api ({A}:15)",
        ],
        id="two Certificates writing one Secret are both reported",
    ),
    pytest.param(
        {A: BAD_INDENTATION},
        [f"{A}:5: invalid YAML: mapping values are not allowed in this context"],
        id="invalid YAML is reported at the line of the problem",
    ),
    pytest.param(
        {A: CONTROL_CHARACTER},
        [f"{A}:4: invalid YAML: character '\\x0b' is not allowed"],
        id="a control character is reported on one line at the line it is on",
    ),
    pytest.param(
        {A: IMPOSSIBLE_DATE},
        [f"{A}:5: invalid YAML value: month must be in 1..12"],
        id="an impossible date in YAML is an error not a crash",
    ),
    pytest.param(
        {A: NOT_UTF8},
        [f"{A}:5: not UTF-8 (byte 0xe9); save the file as UTF-8"],
        id="non-UTF-8 bytes are reported at the line of the bad byte",
    ),
    pytest.param(
        {"manifests/venafi.yaml": VAULT.replace("  vault:", "  venafi:")},
        [
            "manifests/venafi.yaml:6: spec.venafi: unknown field "
            "(expected one of: acme, ca, selfSigned, vault)"
        ],
        id="an issuer type gitcert does not know is an unknown field",
    ),
    pytest.param(
        {"manifests/vault.yaml": VAULT.replace("pki/sign/web", "pki/issue/web")},
        [
            "manifests/vault.yaml:8: spec.vault.path: 'pki/issue/web' is not <mount>/sign/<role>; "
            "gitcert signs CSRs and never calls issue (keys stay local)"
        ],
        id="a vault path to the issue endpoint is refused",
    ),
    pytest.param(
        {"manifests/vault.yaml": VAULT.replace("server:", "sever:")},
        [
            "manifests/vault.yaml:6: spec.vault.server: required field is missing",
            "manifests/vault.yaml:7: spec.vault.sever: unknown field "
            "(expected one of: auth, caBundle, namespace, path, server)",
        ],
        id="a typo in a vault field is an unknown field",
    ),
    pytest.param(
        {"manifests/vault.yaml": VAULT + "    auth:\n      kubernetes:\n        role: gitcert\n"},
        [
            "manifests/vault.yaml:10: spec.vault.auth.kubernetes: unknown field "
            "(expected one of: appRole, jwt, tokenSecretRef)"
        ],
        id="vault kubernetes auth is not supported",
    ),
    pytest.param(
        {"manifests/vault.yaml": VAULT + "    auth:\n      jwt:\n        role: certs\n"},
        [
            "manifests/vault.yaml:10: spec.vault.auth.jwt: "
            "{'role': 'certs'} is not valid under any of the given schemas"
        ],
        id="vault jwt auth needs tokenEnv or tokenFile",
    ),
    pytest.param(
        {
            "manifests/vault.yaml": VAULT
            + "    auth:\n      tokenSecretRef: {name: t}\n      jwt: {role: r, tokenEnv: T}\n"
        },
        [
            "manifests/vault.yaml:9: spec.vault.auth: expected exactly one of: appRole, jwt, "
            "tokenSecretRef"
        ],
        id="vault auth takes one method",
    ),
    pytest.param(
        {
            "manifests/vault.yaml": VAULT
            + leaf(
                "sub",
                "team-a",
                issuerRef={"name": "vault", "kind": "ClusterIssuer"},
                isCA=True,
                subject={"organizations": ["Acme"]},
            )
        },
        [
            "manifests/vault.yaml:22: spec.isCA: Vault's pki/sign/web endpoint signs leaf "
            "certificates only; issue CAs in Vault itself or with the ca issuer",
            "manifests/vault.yaml:23: spec.subject: the Vault role behind pki/sign/web decides "
            "subject fields other than commonName; remove this field",
        ],
        id="a CA or subject fields from a vault issuer are refused",
    ),
    pytest.param(
        {A: leaf("web", "team-a").replace("cert-manager.io/v1", "cert-manager.io/v1alpha2")},
        [
            f"{A}:2: apiVersion: unsupported apiVersion/kind cert-manager.io/v1alpha2 Certificate; "
            + KNOWN_KINDS
        ],
        id="a wrong apiVersion is unsupported",
    ),
    pytest.param(
        {A: leaf("web", "team-a").replace("kind: Certificate", "kind: Certificat")},
        [f"{A}:3: kind: unsupported apiVersion/kind cert-manager.io/v1 Certificat; " + KNOWN_KINDS],
        id="a wrong kind is unsupported",
    ),
    pytest.param(
        {A: two_good_then(leaf("three", "team-a", duration="90d"))},
        [f"{A}:42: spec.duration: '90d' is not a duration; {DURATION_HINT}"],
        id="a schema error in the third document points into the third document",
    ),
    pytest.param(
        {A: THREE_WITH_COMMENTS},
        [f"{A}:47: spec.duration: '90d' is not a duration; {DURATION_HINT}"],
        id="comments and blank lines between documents are counted",
    ),
    pytest.param(
        {A: two_good_then("---\n" + BAD_INDENTATION)},
        [f"{A}:34: invalid YAML: mapping values are not allowed in this context"],
        id="invalid YAML in the third document points into the third document",
    ),
    pytest.param(
        {A: two_good_then("---\n").encode() + NOT_UTF8},
        [f"{A}:34: not UTF-8 (byte 0xe9); save the file as UTF-8"],
        id="non-UTF-8 bytes in the third document point at their line",
    ),
    pytest.param(
        {A: leaf("web", "team-a", secretName="[/oops]")},
        [f"{A}:8: spec.secretName: '[/oops]' is not a valid name (lower-case, digits, '-', '.')"],
        id="a value that looks like a closing markup tag is printed verbatim",
    ),
    pytest.param(
        {A: leaf("web", "team-a", secretName="[bold]web")},
        [f"{A}:8: spec.secretName: '[bold]web' is not a valid name (lower-case, digits, '-', '.')"],
        id="a value that looks like a style tag is printed verbatim",
    ),
]


@pytest.mark.parametrize("command", ["validate", "plan", "apply"])
@pytest.mark.parametrize(("files", "expected"), BAD)
def test_bad_input_is_reported_at_file_line_and_field_and_nothing_is_written(
    cert_repo: CertRepo, command: str, files: dict[str, str | bytes], expected: list[Expected]
) -> None:
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    for path, text in files.items():
        cert_repo.write(path, text)
    head = cert_repo.commit("bad input")
    files_before = tree_files(cert_repo.path)

    result = run(cert_repo, command)

    assert result.stderr.splitlines() == error_lines(expected)
    assert result.stdout == ""
    assert result.exit_code == 1
    assert cert_repo.head() == head
    assert cert_repo.log() == ["bad input"]
    assert git(cert_repo.path, "status", "--porcelain") == ""
    assert tree_files(cert_repo.path) == files_before
    assert not (cert_repo.path / "secrets").exists()
    assert not (cert_repo.path / "status").exists()


def test_manifests_are_read_from_the_commit_not_the_work_tree(cert_repo: CertRepo) -> None:
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    cert_repo.write(A, leaf("web", "team-a"))
    cert_repo.commit("good")
    cert_repo.write(A, leaf("web", "team-a", duration="90d"))

    result = run(cert_repo, "validate")

    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "2 certificate(s), 2 issuer(s), 0 bundle(s) and 0 policy(ies) are valid.\n",
        "",
    )


# --- valid input -------------------------------------------------------------------------------


def test_validate_reports_what_is_valid(cert_repo: CertRepo) -> None:
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    cert_repo.write(A, leaf("web", "team-a"))
    head = cert_repo.commit("good")

    result = run(cert_repo, "validate")

    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "2 certificate(s), 2 issuer(s), 0 bundle(s) and 0 policy(ies) are valid.\n",
        "",
    )
    assert cert_repo.head() == head
    assert not (cert_repo.path / "secrets").exists()


def test_values_at_the_limits_are_valid(cert_repo: CertRepo) -> None:
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    cert_repo.write(
        A,
        leaf("longest-cn", "team-a", commonName="c" * 64)
        + leaf("shortest", "team-a", duration="1h", renewBefore="5m")
        + leaf("latest", "team-a", duration="1h", renewBeforePercentage=91)
        + leaf("just-under", "team-a", duration="2h", renewBefore="1h59m59s"),
    )
    cert_repo.commit("limits")

    result = run(cert_repo, "validate")

    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "5 certificate(s), 2 issuer(s), 0 bundle(s) and 0 policy(ies) are valid.\n",
        "",
    )


def test_a_yaml_directive_before_the_first_document_is_valid(cert_repo: CertRepo) -> None:
    cert_repo.write("manifests/pki.yaml", "%YAML 1.1\n---\n" + BOOTSTRAP)
    cert_repo.commit("directive")

    result = run(cert_repo, "validate")

    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "1 certificate(s), 2 issuer(s), 0 bundle(s) and 0 policy(ies) are valid.\n",
        "",
    )


# --- names normalisation ----------------------------------------------------------------------


def issue(cert_repo: CertRepo, **spec: object) -> str:
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    cert_repo.write(A, leaf("web", "team-a", **spec))
    cert_repo.commit("add web")
    result = run(cert_repo, "apply")
    assert (result.exit_code, result.stderr) == (0, "")
    assert cert_repo.log() == ["gitcert: issue 2", "add web"]
    return cert_repo.head()


def assert_no_changes_after(cert_repo: CertRepo, **spec: object) -> None:
    cert_repo.write(A, leaf("web", "team-a", **spec))
    edited = cert_repo.commit("respell names")

    plan = run(cert_repo, "plan", "--detailed-exitcode")
    assert (plan.exit_code, plan.stdout, plan.stderr) == (0, NO_CHANGES, "")

    apply = run(cert_repo, "apply")
    assert (apply.exit_code, apply.stdout, apply.stderr) == (0, NO_CHANGES, "")
    assert cert_repo.head() == edited


def test_dns_names_differing_in_order_case_trailing_dot_and_duplicates_plan_no_changes(
    cert_repo: CertRepo,
) -> None:
    issue(cert_repo, dnsNames=["a.example.test", "B.Example.Test."])
    cert = issued_certificate(cert_repo, "team-a", "web-tls")
    assert subject_alt_names(cert) == (["a.example.test", "b.example.test"], [])

    assert_no_changes_after(
        cert_repo, dnsNames=["b.example.test", "a.example.test", "a.example.test"]
    )


def test_a_unicode_dns_name_is_issued_as_punycode(cert_repo: CertRepo) -> None:
    issue(cert_repo, dnsNames=["bücher.example.test"])

    cert = issued_certificate(cert_repo, "team-a", "web-tls")
    assert subject_alt_names(cert) == (["xn--bcher-kva.example.test"], [])
    secret = yaml.safe_load(cert_repo.read("secrets/team-a/web-tls.yaml"))
    alt_names = secret["metadata"]["annotations"]["cert-manager.io/alt-names"]
    assert alt_names == "xn--bcher-kva.example.test"

    assert_no_changes_after(
        cert_repo, dnsNames=["xn--bcher-kva.example.test", "BÜCHER.Example.Test."]
    )


def test_ip_addresses_in_different_spellings_are_the_same(cert_repo: CertRepo) -> None:
    issue(cert_repo, ipAddresses=["::0001"])

    cert = issued_certificate(cert_repo, "team-a", "web-tls")
    assert subject_alt_names(cert) == (["web.example.test"], ["::1"])

    assert_no_changes_after(cert_repo, ipAddresses=["::1", "0:0:0:0:0:0:0:1"])
