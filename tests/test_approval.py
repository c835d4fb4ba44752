"""CertificateRequestPolicies: approver-policy's rules applied to what Certificates request.

First :func:`gitcert.approval.evaluate` on its own, table-driven with exact refusals; then
policy manifests that gitcert refuses to read, at file, line and field; then end to end:
a commit that asks for a wildcard a policy forbids fails ``plan`` at the wildcard's line
and ``apply`` writes nothing, and apply refuses to sign what a policy denies even when
handed a plan that was never checked.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gitcert import clock, gitops, reconcile
from gitcert.approval import Refusal, evaluate
from gitcert.model import (
    AllowedSubject,
    AllowedValues,
    CertificateRequestPolicy,
    CertificateSpec,
    IssuerRef,
    KeySpec,
    ObjectKey,
    PolicyAllowed,
    PolicyConstraints,
    PolicySelector,
    Request,
    Source,
    Subject,
)
from tests.conftest import BOOTSTRAP, NOW, CertRepo, leaf

# --- builders ---------------------------------------------------------------------------------

CA = IssuerRef("ca", "ClusterIssuer")
ECDSA_256 = KeySpec()
FOR_CA = PolicySelector(issuer_name="ca")
UNBOUNDED = PolicyConstraints()


def certificate(
    namespace: str = "team-a",
    issuer: IssuerRef = CA,
    key: KeySpec = ECDSA_256,
    usages: tuple[str, ...] = (),
    **request: Any,
) -> CertificateSpec:
    """A Certificate for ``app.example.test``; ``request`` replaces fields of its Request."""
    asked = replace(Request(dns_names=("app.example.test",)), **request)
    return CertificateSpec(
        key=ObjectKey("Certificate", namespace, "app"),
        source=Source("manifests/app.yaml", 1),
        secret_name="app-tls",
        issuer_ref=issuer,
        request=asked,
        private_key=key,
        spec_usages=usages,
    )


def policy(
    name: str = "web",
    selector: PolicySelector = FOR_CA,
    constraints: PolicyConstraints = UNBOUNDED,
    **allowed: Any,
) -> CertificateRequestPolicy:
    """A policy for the ``ca`` issuer allowing ``app.example.test``; ``allowed`` replaces."""
    permits = replace(PolicyAllowed(dns_names=values("app.example.test")), **allowed)
    return CertificateRequestPolicy(
        name, Source("manifests/policy.yaml", 1), selector, permits, constraints
    )


def values(*patterns: str, required: bool = False) -> AllowedValues:
    return AllowedValues(patterns, required)


def denied(policy: str, field: tuple[str | int, ...], reason: str) -> Refusal:
    return Refusal(policy, field, f"denied by CertificateRequestPolicy {policy}: {reason}")


NO_WILDCARDS = policy("no-wildcards", dns_names=values("app.example.test", "www.example.test"))
LABELS = {"team-a": {"env": "prod"}, "team-b": {"env": "dev"}}

# --- evaluate ----------------------------------------------------------------------------------

CASES = [
    pytest.param(
        [],
        certificate(dns_names=("*.example.test",), is_ca=True),
        [],
        id="without any policy everything is allowed",
    ),
    pytest.param(
        [NO_WILDCARDS],
        certificate(dns_names=("*.example.test", "app.example.test")),
        [
            denied(
                "no-wildcards",
                ("spec", "dnsNames", "*.example.test"),
                '"*.example.test" is not allowed (allowed: "app.example.test", "www.example.test")',
            )
        ],
        id="a wildcard is refused where only exact names are allowed",
    ),
    pytest.param(
        [NO_WILDCARDS],
        certificate(dns_names=("app.example.test", "www.example.test")),
        [],
        id="exact names the policy lists are allowed",
    ),
    pytest.param(
        [policy(dns_names=values("*.example.test"))],
        certificate(dns_names=("a.b.example.test", "*.example.test")),
        [],
        id="a glob star matches any run of characters, dots and a wildcard's star included",
    ),
    pytest.param(
        [policy(dns_names=values("api-*.example.test"))],
        certificate(dns_names=("api-1.example.test", "web.example.test")),
        [
            denied(
                "web",
                ("spec", "dnsNames", "web.example.test"),
                '"web.example.test" is not allowed (allowed: "api-*.example.test")',
            )
        ],
        id="a glob star inside a label allows only names of that shape",
    ),
    pytest.param(
        [policy(dns_names=values("APP.Example.TEST."))],
        certificate(),
        [],
        id="dns name patterns are compared normalised like the names",
    ),
    pytest.param(
        [policy(dns_names=values("*.bücher.example"))],
        certificate(dns_names=("shop.xn--bcher-kva.example",)),
        [],
        id="a unicode label in a dns name pattern matches its punycode",
    ),
    pytest.param(
        [policy(common_name=values("app.example.test", required=True))],
        certificate(),
        [
            denied(
                "web",
                ("spec", "commonName"),
                "required by the policy (allowed.commonName), and the Certificate has none",
            )
        ],
        id="a required field that is missing is refused",
    ),
    pytest.param(
        [policy(dns_names=values("app.example.test", required=True))],
        certificate(),
        [],
        id="a required field that is present is allowed",
    ),
    pytest.param(
        [policy()],
        certificate(ip_addresses=("10.0.0.1",)),
        [
            denied(
                "web",
                ("spec", "ipAddresses", "10.0.0.1"),
                '"10.0.0.1" is not allowed (the policy allows no ipAddresses)',
            )
        ],
        id="a field the policy does not list is refused when present",
    ),
    pytest.param(
        [policy(common_name=values())],
        certificate(common_name="app"),
        [
            denied(
                "web",
                ("spec", "commonName"),
                '"app" is not allowed (the policy allows no commonName)',
            )
        ],
        id="a field listed without a value allows nothing",
    ),
    pytest.param(
        [policy(ip_addresses=values("fd00:0::10", "10.0.0.*"))],
        certificate(ip_addresses=("10.0.0.7", "fd00::10")),
        [],
        id="ip address patterns are compared in canonical form and may be globs",
    ),
    pytest.param(
        [policy(email_addresses=values("*@EXAMPLE.test"))],
        certificate(email_addresses=("ops@example.test", "ops@other.test")),
        [
            denied(
                "web",
                ("spec", "emailAddresses", "ops@other.test"),
                '"ops@other.test" is not allowed (allowed: "*@EXAMPLE.test")',
            )
        ],
        id="an email address outside the allowed domain is refused",
    ),
    pytest.param(
        [policy(uris=values("spiffe://example.test/ns/team-a/*"))],
        certificate(uris=("spiffe://example.test/ns/team-b/sa/x",)),
        [
            denied(
                "web",
                ("spec", "uris", "spiffe://example.test/ns/team-b/sa/x"),
                '"spiffe://example.test/ns/team-b/sa/x" is not allowed '
                '(allowed: "spiffe://example.test/ns/team-a/*")',
            )
        ],
        id="a uri outside the allowed glob is refused",
    ),
    pytest.param(
        [policy()],
        certificate(is_ca=True),
        [
            denied(
                "web",
                ("spec", "isCA"),
                "isCA: true is not allowed (the policy does not set allowed.isCA: true)",
            )
        ],
        id="isCA is refused unless the policy allows it",
    ),
    pytest.param(
        [policy(is_ca=True)],
        certificate(),
        [],
        id="allowed isCA permits leaves too",
    ),
    pytest.param(
        [policy(usages=("digital signature", "server auth"))],
        certificate(usages=("digital signature", "client auth")),
        [
            denied(
                "web",
                ("spec", "usages", 1),
                '"client auth" is not allowed (allowed: "digital signature", "server auth")',
            )
        ],
        id="a usage the policy does not list is refused at its index",
    ),
    pytest.param(
        [policy()],
        certificate(usages=()),
        [],
        id="usages left out of the Certificate ask for nothing to check",
    ),
    pytest.param(
        [policy(subject=AllowedSubject(organizations=values("Example *")))],
        certificate(subject=Subject(organizations=("Example Corp", "Acme"), countries=("NL",))),
        [
            denied(
                "web",
                ("spec", "subject", "organizations", 1),
                '"Acme" is not allowed (allowed: "Example *")',
            )
        ],
        id="a subject organization outside the list is refused at its index",
    ),
    pytest.param(
        [policy(subject=AllowedSubject(organizations=values("Example Corp")))],
        certificate(subject=Subject(organizations=("Example Corp",), countries=("NL",))),
        [
            denied(
                "web",
                ("spec", "subject", "countries", 0),
                '"NL" is not allowed (the policy allows no subject.countries)',
            )
        ],
        id="a subject attribute the policy does not list is refused",
    ),
    pytest.param(
        [policy(subject=AllowedSubject(serial_number=values("", required=True)))],
        certificate(),
        [
            denied(
                "web",
                ("spec", "subject", "serialNumber"),
                "required by the policy (allowed.subject.serialNumber), and the Certificate "
                "has none",
            )
        ],
        id="a required subject serial number that is missing is refused",
    ),
    pytest.param(
        [
            policy(
                common_name=values("app"),
                subject=AllowedSubject(organizations=values("Example Corp")),
            )
        ],
        certificate(literal_subject="CN=app,O=Acme"),
        [
            denied(
                "web",
                ("spec", "literalSubject"),
                'subject.organizations "Acme" is not allowed (allowed: "Example Corp")',
            )
        ],
        id="a literalSubject is checked attribute by attribute",
    ),
    pytest.param(
        [policy(common_name=values("*"))],
        certificate(literal_subject="CN=app,DC=example"),
        [
            denied(
                "web",
                ("spec", "literalSubject"),
                "attribute DC cannot be allowed by a CertificateRequestPolicy; remove it",
            )
        ],
        id="a literalSubject attribute no policy field covers is refused",
    ),
    pytest.param(
        [policy(constraints=PolicyConstraints(max_duration=timedelta(days=30)))],
        certificate(),
        [
            denied(
                "web",
                ("spec", "duration"),
                "duration 2160h0m0s is longer than maxDuration 720h0m0s",
            )
        ],
        id="the default duration beyond maxDuration is refused",
    ),
    pytest.param(
        [policy(constraints=PolicyConstraints(min_duration=timedelta(hours=24)))],
        certificate(duration=timedelta(hours=12)),
        [
            denied(
                "web", ("spec", "duration"), "duration 12h0m0s is shorter than minDuration 24h0m0s"
            )
        ],
        id="a duration under minDuration is refused",
    ),
    pytest.param(
        [
            policy(
                constraints=PolicyConstraints(
                    min_duration=timedelta(hours=1), max_duration=timedelta(days=90)
                )
            )
        ],
        certificate(),
        [],
        id="a duration on the bounds is allowed",
    ),
    pytest.param(
        [policy(constraints=PolicyConstraints(key_algorithm="ECDSA"))],
        certificate(key=KeySpec("RSA", 2048)),
        [
            denied(
                "web",
                ("spec", "privateKey", "algorithm"),
                "a RSA key is not allowed (constraints.privateKey.algorithm is ECDSA)",
            )
        ],
        id="a key algorithm other than the constraint is refused",
    ),
    pytest.param(
        [policy(constraints=PolicyConstraints(min_key_size=3072))],
        certificate(key=KeySpec("RSA", 2048)),
        [denied("web", ("spec", "privateKey", "size"), "RSA key size 2048 is below minSize 3072")],
        id="a key below minSize is refused",
    ),
    pytest.param(
        [policy(constraints=PolicyConstraints(max_key_size=256))],
        certificate(key=KeySpec("ECDSA", 384)),
        [denied("web", ("spec", "privateKey", "size"), "ECDSA key size 384 is above maxSize 256")],
        id="a key above maxSize is refused",
    ),
    pytest.param(
        [policy(constraints=PolicyConstraints(min_key_size=256))],
        certificate(key=KeySpec("Ed25519", 0)),
        [
            denied(
                "web",
                ("spec", "privateKey", "size"),
                "an Ed25519 key (no size) is below minSize 256",
            )
        ],
        id="an Ed25519 key under any minSize is refused",
    ),
    pytest.param(
        [
            policy(
                constraints=PolicyConstraints(
                    key_algorithm="ECDSA", min_key_size=256, max_key_size=384
                )
            )
        ],
        certificate(key=KeySpec("ECDSA", 384)),
        [],
        id="a key within algorithm and size bounds is allowed",
    ),
    pytest.param(
        [policy("other", PolicySelector(issuer_name="vault-*"))],
        certificate(),
        [
            Refusal(
                "",
                ("spec", "issuerRef"),
                "no CertificateRequestPolicy selects it (issuerRef ClusterIssuer/ca in namespace "
                "team-a; policies: other)",
            )
        ],
        id="a policy for another issuer leaves it unselected, which denies it",
    ),
    pytest.param(
        [policy(selector=PolicySelector(issuer_name="c*", issuer_kind="ClusterIssuer"))],
        certificate(),
        [],
        id="a selector's issuer name and kind are globs",
    ),
    pytest.param(
        [policy("issuers", PolicySelector(issuer_kind="Issuer"))],
        certificate(),
        [
            Refusal(
                "",
                ("spec", "issuerRef"),
                "no CertificateRequestPolicy selects it (issuerRef ClusterIssuer/ca in namespace "
                "team-a; policies: issuers)",
            )
        ],
        id="a selector for namespaced Issuers does not select a ClusterIssuer's request",
    ),
    pytest.param(
        [policy("acme", PolicySelector(issuer_group="acme.example"))],
        certificate(),
        [
            Refusal(
                "",
                ("spec", "issuerRef"),
                "no CertificateRequestPolicy selects it (issuerRef ClusterIssuer/ca in namespace "
                "team-a; policies: acme)",
            )
        ],
        id="a selector for another issuer group does not select cert-manager's issuers",
    ),
    pytest.param(
        [policy("team-b", PolicySelector(namespace_names=("team-b", "shared-*")))],
        certificate(namespace="team-a"),
        [
            Refusal(
                "",
                ("spec", "issuerRef"),
                "no CertificateRequestPolicy selects it (issuerRef ClusterIssuer/ca in namespace "
                "team-a; policies: team-b)",
            )
        ],
        id="a selector for other namespace names does not select it",
    ),
    pytest.param(
        [policy(selector=PolicySelector(namespace_names=("team-*",)))],
        certificate(namespace="team-a"),
        [],
        id="a selector's namespace names are globs",
    ),
    pytest.param(
        [policy(selector=PolicySelector(namespace_labels={"env": "prod"}))],
        certificate(namespace="team-a"),
        [],
        id="a selector's matchLabels select by the namespace's labels in gitcert.yaml",
    ),
    pytest.param(
        [policy("prod", PolicySelector(namespace_labels={"env": "prod"}))],
        certificate(namespace="team-b"),
        [
            Refusal(
                "",
                ("spec", "issuerRef"),
                "no CertificateRequestPolicy selects it (issuerRef ClusterIssuer/ca in namespace "
                "team-b; policies: prod)",
            )
        ],
        id="a namespace without the selected labels is not selected",
    ),
    pytest.param(
        [NO_WILDCARDS, policy("wildcards", dns_names=values("*.example.test"))],
        certificate(dns_names=("*.example.test",)),
        [],
        id="of two selecting policies one allowing is enough",
    ),
    pytest.param(
        [
            policy("b-strict", dns_names=values("www.example.test"), is_ca=True),
            policy("a-no-ca", dns_names=values("*.example.test")),
        ],
        certificate(dns_names=("*.example.test",), is_ca=True),
        [
            denied(
                "a-no-ca",
                ("spec", "isCA"),
                "isCA: true is not allowed (the policy does not set allowed.isCA: true)",
            ),
            denied(
                "b-strict",
                ("spec", "dnsNames", "*.example.test"),
                '"*.example.test" is not allowed (allowed: "www.example.test")',
            ),
        ],
        id="when every selecting policy refuses each one's first refusal is reported by name",
    ),
    pytest.param(
        [NO_WILDCARDS, policy("elsewhere", PolicySelector(issuer_name="vault"), is_ca=True)],
        certificate(is_ca=True),
        [
            denied(
                "no-wildcards",
                ("spec", "isCA"),
                "isCA: true is not allowed (the policy does not set allowed.isCA: true)",
            )
        ],
        id="a policy that does not select it neither allows nor refuses it",
    ),
]


@pytest.mark.parametrize(("policies", "cert", "expected"), CASES)
def test_evaluate(
    policies: list[CertificateRequestPolicy], cert: CertificateSpec, expected: list[Refusal]
) -> None:
    assert evaluate(policies, cert, LABELS) == expected


# --- policy manifests gitcert refuses ------------------------------------------------------------

P = "manifests/policy.yaml"

GOOD_POLICY = """\
apiVersion: policy.cert-manager.io/v1alpha1
kind: CertificateRequestPolicy
metadata:
  name: leaves
spec:
  allowed:
    dnsNames:
      values: ["*.example.test"]
  constraints:
    maxDuration: 2160h
  selector:
    issuerRef: {name: ca, kind: ClusterIssuer}
"""

# Lets the BOOTSTRAP root CA through: a real repo needs a policy for it once any exists.
BOOTSTRAP_POLICY = """\
---
apiVersion: policy.cert-manager.io/v1alpha1
kind: CertificateRequestPolicy
metadata:
  name: root-ca
spec:
  allowed:
    commonName: {value: Test Root CA}
    isCA: true
  constraints:
    privateKey: {algorithm: ECDSA}
  selector:
    issuerRef: {name: selfsigned, kind: ClusterIssuer}
"""

BAD_POLICIES = [
    pytest.param(
        GOOD_POLICY.replace(
            '      values: ["*.example.test"]\n',
            '      values: ["*.example.test"]\n'
            "      validations:\n"
            "        - rule: self.endsWith('.example.test')\n",
        ),
        [
            f"{P}:9: spec.allowed.dnsNames.validations: CEL validations are not supported yet; "
            "use value/values globs or remove them"
        ],
        id="CEL validations are refused as not supported yet at their line",
    ),
    pytest.param(
        GOOD_POLICY.replace(
            "  constraints:\n",
            "    subject:\n"
            "      organizations:\n"
            "        validations: [{rule: 'self != \"\"'}]\n"
            "  constraints:\n",
        ),
        [
            f"{P}:11: spec.allowed.subject.organizations.validations: CEL validations are not "
            "supported yet; use value/values globs or remove them"
        ],
        id="CEL validations on a subject attribute are refused too",
    ),
    pytest.param(
        GOOD_POLICY + "  plugins:\n    rego: {values: {}}\n",
        [
            f"{P}:13: spec.plugins: plugins are not supported yet; gitcert evaluates allowed, "
            "constraints, selector"
        ],
        id="approver-policy plugins are refused as not supported yet",
    ),
    pytest.param(
        GOOD_POLICY.replace("  name: leaves\n", "  name: leaves\n  namespace: team-a\n"),
        [
            f"{P}:5: metadata.namespace: a CertificateRequestPolicy is cluster-scoped; "
            "remove metadata.namespace"
        ],
        id="a namespace on the cluster-scoped policy is refused",
    ),
    pytest.param(
        GOOD_POLICY + "---\n" + GOOD_POLICY,
        [f"{P}:17: metadata.name: CertificateRequestPolicy leaves is also defined at {P}:1"],
        id="two policies of one name are refused",
    ),
    pytest.param(
        GOOD_POLICY.replace("    maxDuration: 2160h\n", "    maxDuration: 90d\n"),
        [
            f"{P}:10: spec.constraints.maxDuration: '90d' is not a duration; expected e.g. 2160h, "
            "1h30m or 90m"
        ],
        id="a maxDuration that is not a Go duration is refused",
    ),
    pytest.param(
        GOOD_POLICY.replace(
            "    maxDuration: 2160h\n", "    minDuration: 3000h\n    maxDuration: 2160h\n"
        ),
        [
            f"{P}:10: spec.constraints.minDuration: minDuration is longer than maxDuration: no "
            "duration is allowed"
        ],
        id="a minDuration longer than the maxDuration is refused",
    ),
    pytest.param(
        GOOD_POLICY.replace(
            "    maxDuration: 2160h\n", "    privateKey: {minSize: 4096, maxSize: 2048}\n"
        ),
        [
            f"{P}:10: spec.constraints.privateKey.minSize: minSize is larger than maxSize: no key "
            "size is allowed"
        ],
        id="a minSize larger than the maxSize is refused",
    ),
    pytest.param(
        GOOD_POLICY.replace(
            '      values: ["*.example.test"]\n', '      value: "*.example.test"\n'
        ),
        [
            f"{P}:8: spec.allowed.dnsNames.value: unknown field (expected one of: required, "
            "validations, values)"
        ],
        id="a list field takes values not value, as in approver-policy",
    ),
    pytest.param(
        GOOD_POLICY.replace("    issuerRef: {name: ca, kind: ClusterIssuer}\n", "    {}\n").replace(
            "  selector:\n    {}\n", "  selector: {}\n"
        ),
        [
            f"{P}:11: spec.selector: select with issuerRef and/or namespace (an empty issuerRef "
            "selects every issuer)"
        ],
        id="an empty selector is refused",
    ),
    pytest.param(
        GOOD_POLICY.replace("  selector:\n    issuerRef: {name: ca, kind: ClusterIssuer}\n", ""),
        [f"{P}:5: spec.selector: required field is missing"],
        id="a policy without a selector is refused",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_POLICIES)
def test_bad_policies_are_reported_at_file_line_and_field(
    cert_repo: CertRepo, text: str, expected: list[str]
) -> None:
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    cert_repo.write(P, text)
    cert_repo.commit("a policy")

    result = cert_repo.gitcert("validate")

    lines = [f"error: {e}" for e in expected]
    assert result.stderr.splitlines() == [
        *lines,
        f"{len(expected)} problem(s) found; nothing was written.",
    ]
    assert result.exit_code == 1


# --- refusals at the line the user wrote ---------------------------------------------------------

A = "manifests/team-a.yaml"
LEAVES_POLICY = GOOD_POLICY.replace(
    "    maxDuration: 2160h\n", "    maxDuration: 2160h\n    privateKey: {maxSize: 256}\n"
)


def leaves_denied(reason: str) -> str:
    return f"denied by CertificateRequestPolicy leaves: {reason}"


# leaf() writes its extra spec fields from line 14 on (see tests/test_validation.py).
LOCATED = [
    pytest.param(
        {"emailAddresses": ["Ops@Example.TEST"]},
        f"{A}:15: spec.emailAddresses[0]: "
        + leaves_denied('"Ops@example.test" is not allowed (the policy allows no emailAddresses)'),
        id="an email address is refused at its item normalised",
    ),
    pytest.param(
        {"uris": ["spiffe://example.test/a"]},
        f"{A}:15: spec.uris[0]: "
        + leaves_denied('"spiffe://example.test/a" is not allowed (the policy allows no uris)'),
        id="a uri is refused at its item",
    ),
    pytest.param(
        {"ipAddresses": ["fd00:0::0001"]},
        f"{A}:15: spec.ipAddresses[0]: "
        + leaves_denied('"fd00::1" is not allowed (the policy allows no ipAddresses)'),
        id="an ip address is refused at its item in canonical form",
    ),
    pytest.param(
        {"usages": ["server auth", "digital signature"]},
        f"{A}:15: spec.usages[0]: "
        + leaves_denied('"server auth" is not allowed (the policy allows no usages)'),
        id="a usage is refused at its item",
    ),
    pytest.param(
        {"subject": {"organizations": ["Acme"]}},
        f"{A}:16: spec.subject.organizations[0]: "
        + leaves_denied('"Acme" is not allowed (the policy allows no subject.organizations)'),
        id="a subject attribute is refused at its item",
    ),
    pytest.param(
        {"isCA": True},
        f"{A}:14: spec.isCA: "
        + leaves_denied("isCA: true is not allowed (the policy does not set allowed.isCA: true)"),
        id="isCA is refused at its line",
    ),
    pytest.param(
        {"duration": "4320h"},
        f"{A}:14: spec.duration: "
        + leaves_denied("duration 4320h0m0s is longer than maxDuration 2160h0m0s"),
        id="a duration is refused at its line",
    ),
    pytest.param(
        {"privateKey": {"algorithm": "ECDSA", "size": 384}},
        f"{A}:16: spec.privateKey.size: "
        + leaves_denied("ECDSA key size 384 is above maxSize 256"),
        id="a key size is refused at its line",
    ),
]


@pytest.mark.parametrize(("fields", "expected"), LOCATED)
def test_refusals_are_located_at_the_field_the_user_wrote(
    cert_repo: CertRepo, fields: dict[str, object], expected: str
) -> None:
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    cert_repo.write("manifests/policies.yaml", LEAVES_POLICY + BOOTSTRAP_POLICY)
    cert_repo.write(A, leaf("web", "team-a", **fields))
    cert_repo.commit("a Certificate")

    result = cert_repo.gitcert("validate")

    assert result.stderr.splitlines() == [
        f"error: {expected}",
        "1 problem(s) found; nothing was written.",
    ]
    assert result.exit_code == 1


# --- end to end --------------------------------------------------------------------------------

NO_WILDCARDS_POLICY = """\
# Leaves of the ca ClusterIssuer: two exact names, no wildcards.
apiVersion: policy.cert-manager.io/v1alpha1
kind: CertificateRequestPolicy
metadata:
  name: no-wildcards
spec:
  allowed:
    dnsNames:
      values: [app.example.test, www.example.test]
  selector:
    issuerRef: {name: ca, kind: ClusterIssuer, group: cert-manager.io}
"""


@pytest.fixture
def guarded(cert_repo: CertRepo) -> CertRepo:
    """The bootstrap CA with a policy for it, no-wildcards for leaves, and one leaf issued."""
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    cert_repo.write("manifests/policies.yaml", NO_WILDCARDS_POLICY + BOOTSTRAP_POLICY)
    cert_repo.write("manifests/app.yaml", leaf("app", "team-a"))
    cert_repo.commit("policies")
    result = cert_repo.gitcert("apply")
    assert result.exit_code == 0, result.output
    return cert_repo


def test_a_wildcard_a_policy_forbids_fails_plan_at_its_line_and_apply_writes_nothing(
    guarded: CertRepo,
) -> None:
    # Line 11 of wild.yaml is the wildcard, the second of dnsNames (see leaf() in conftest).
    guarded.write(
        "manifests/wild.yaml",
        leaf("wild", "team-a", dnsNames=["www.example.test", "*.example.test"]),
    )
    head = guarded.commit("a wildcard")
    assert guarded.read("manifests/wild.yaml").splitlines()[10] == "  - '*.example.test'"

    plan = guarded.gitcert("plan")

    assert plan.stderr.splitlines() == [
        "error: manifests/wild.yaml:11: spec.dnsNames[1]: denied by CertificateRequestPolicy "
        'no-wildcards: "*.example.test" is not allowed (allowed: "app.example.test", '
        '"www.example.test")',
        "1 problem(s) found; nothing was written.",
    ]
    assert plan.exit_code == 1

    apply = guarded.gitcert("apply")
    assert apply.exit_code == 1
    assert guarded.head() == head
    assert not (guarded.path / "secrets/team-a/wild-tls.yaml").exists()


def test_the_bootstrap_ca_is_issued_under_its_own_policy(guarded: CertRepo) -> None:
    assert guarded.log()[0] == "gitcert: issue 2"
    assert guarded.gitcert("plan").exit_code == 0


def test_without_a_policy_selecting_its_issuer_the_bootstrap_ca_is_denied(
    cert_repo: CertRepo,
) -> None:
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    cert_repo.write("manifests/policies.yaml", NO_WILDCARDS_POLICY)
    cert_repo.write("manifests/app.yaml", leaf("app", "team-a"))
    cert_repo.commit("policies")

    result = cert_repo.gitcert("plan")

    assert result.stderr.splitlines() == [
        "error: manifests/pki.yaml:18: spec.issuerRef: no CertificateRequestPolicy selects it "
        "(issuerRef ClusterIssuer/selfsigned in namespace cert-manager; policies: no-wildcards)",
        "1 problem(s) found; nothing was written.",
    ]
    assert result.exit_code == 1


def test_apply_refuses_to_sign_what_a_policy_denies_in_a_plan_that_was_never_checked(
    cert_repo: CertRepo,
) -> None:
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    cert_repo.write("manifests/web.yaml", leaf("web", "team-a"))
    cert_repo.commit("no policies yet")
    repo = gitops.open_repo(cert_repo.path)
    target = gitops.branch_target(repo, None)
    plan = reconcile.make_plan(target.tree, clock.parse_instant(NOW))

    # The plan was made without policies; the policies arrive only at apply.
    allow_root = policy(
        "root", PolicySelector(issuer_name="selfsigned"), common_name=values("*"), is_ca=True
    )
    unchecked = replace(plan, desired=replace(plan.desired, policies=(allow_root, NO_WILDCARDS)))
    result = reconcile.apply(unchecked, repo, target)

    failed = {o.change.key.name: o.message for o in result.outcomes if not o.ok}
    assert failed == {
        "web": "manifests/web.yaml:10: spec.dnsNames[0]: denied by CertificateRequestPolicy "
        'no-wildcards: "web.example.test" is not allowed (allowed: "app.example.test", '
        '"www.example.test")'
    }
    assert [o.change.key.name for o in result.outcomes if o.ok] == ["root-ca"]
    assert not (cert_repo.path / "secrets/team-a/web-tls.yaml").exists()


def test_in_github_actions_the_refusal_is_annotated_at_the_wildcards_line(
    guarded: CertRepo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    guarded.write(
        "manifests/wild.yaml",
        leaf("wild", "team-a", dnsNames=["www.example.test", "*.example.test"]),
    )
    guarded.commit("a wildcard")
    summary, output = tmp_path / "summary.md", tmp_path / "output.txt"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(guarded.path))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path / "runner"))

    plan = guarded.gitcert("plan")

    assert plan.exit_code == 1
    annotations = [line for line in plan.output.splitlines() if line.startswith("::error")]
    assert annotations == [
        "::error file=manifests/wild.yaml,line=11,title=spec.dnsNames[1]::denied by "
        'CertificateRequestPolicy no-wildcards: "*.example.test" is not allowed (allowed: '
        '"app.example.test", "www.example.test")'
    ]
    assert "no-wildcards" in summary.read_text()
