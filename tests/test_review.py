"""``gitcert plan --base REF``: a pull request's view, only what it changes and how."""

from __future__ import annotations

import json

import pytest

from tests.conftest import BOOTSTRAP, NOW, CertRepo, git, leaf

BUNDLE = """\
---
apiVersion: trust.cert-manager.io/v1alpha1
kind: Bundle
metadata:
  name: {name}
spec:
  sources:
    - secret: {{name: root-ca, key: ca.crt}}
  target:
    configMap: {{key: ca.crt}}
"""


def on_main(repo: CertRepo, manifests: str, apply: bool = True) -> str:
    repo.write("manifests/pki.yaml", manifests)
    repo.commit("base")
    if apply:
        assert repo.gitcert("apply").exit_code == 0
    git(repo.path, "branch", "-f", "base")
    return repo.head()


def plan(repo: CertRepo, *args: str) -> str:
    result = repo.gitcert("plan", "--base", "base", *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_only_changed_objects_are_listed_with_names_key_issuer_and_duration(
    cert_repo: CertRepo,
) -> None:
    base = on_main(cert_repo, BOOTSTRAP + leaf("web") + leaf("api") + leaf("same"))
    cert_repo.write(
        "manifests/pki.yaml",
        BOOTSTRAP
        + leaf(
            "web",
            dnsNames=["web2.example.test", "web.example.test."],
            commonName="web",
            privateKey={"algorithm": "RSA", "size": 3072},
            issuerRef={"name": "selfsigned", "kind": "ClusterIssuer"},
            duration="720h",
        )
        + leaf("same"),
    )
    head = cert_repo.commit()

    assert plan(cert_repo, "--format", "markdown") == (
        "**gitcert plan:** 2 Certificates changed against `base`: 1 to reissue, 1 removed.\n"
        "\n"
        "| object | change | action | reason | names | private key | issuer | duration "
        "| other fields | renewal time |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
        "| `Certificate/default/api` | removed | none | Removed | -`api.example.test` "
        "|  |  |  |  |  |\n"
        "| `Certificate/default/web` | changed | reissue | IssuerChanged | +`web2.example.test` "
        "| ECDSA-256 → RSA-3072 | ClusterIssuer/ca → ClusterIssuer/selfsigned "
        "| 2160h0m0s → 720h0m0s | commonName | 2026-06-21T12:00:00Z (if issued now) |\n"
        "\n"
        "Whole repository: Plan: 1 to reissue; 2 up to date.\n"
        "\n"
        f"<sub>planned at commit {head[:12]} against {base[:12]}, {NOW}</sub>\n"
    )


def test_the_json_plan_gains_a_review_and_keeps_every_other_key(cert_repo: CertRepo) -> None:
    base = on_main(cert_repo, BOOTSTRAP + leaf("web"))
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP + leaf("web", renewBefore="240h"))
    cert_repo.commit()

    with_review = json.loads(plan(cert_repo, "--format", "json"))
    without = json.loads(cert_repo.gitcert("plan", "--format", "json").stdout)

    assert {k: v for k, v in with_review.items() if k != "review"} == without
    assert with_review["review"] == {
        "base": "base",
        "baseCommit": base,
        "summary": "1 Certificate changed against `base`: 1 to update-status.",
        "otherPending": 0,
        "certificates": [
            {
                "object": "Certificate/default/web",
                "namespace": "default",
                "name": "web",
                "change": "changed",
                "file": "manifests/pki.yaml",
                "line": 28,
                "action": "update-status",
                "reason": "StatusOutdated",
                "message": "the status record is missing or stale",
                "renewalTime": "2026-08-20T12:00:00Z",
                "renewalTimeEstimated": False,
                "namesAdded": [],
                "namesRemoved": [],
                "privateKey": None,
                "issuerRef": None,
                "duration": None,
                "otherFields": ["renewBefore"],
            }
        ],
        "bundles": [],
    }


def test_an_unchanged_pull_request_says_so_and_counts_what_the_schedule_does(
    cert_repo: CertRepo,
) -> None:
    on_main(cert_repo, BOOTSTRAP + leaf("web", duration="24h"))
    cert_repo.write("README.md", "docs only\n")
    cert_repo.commit()

    markdown = cert_repo.gitcert(
        "plan", "--base", "base", "--format", "markdown", now="2026-06-02T06:00:00Z"
    ).stdout

    assert markdown.splitlines()[:3] == [
        "**gitcert plan:** No Certificate or Bundle changed against `base`; 1 other pending "
        "change(s) (renewals, repairs).",
        "",
        "Whole repository: Plan: 1 to renew; 1 up to date.",
    ]


def test_more_than_ten_changes_fold_into_a_details_block(cert_repo: CertRepo) -> None:
    on_main(cert_repo, BOOTSTRAP, apply=False)
    # The CA is in the base already: 11 rows, one more than fit unfolded.
    cert_repo.write(
        "manifests/pki.yaml", BOOTSTRAP + "".join(leaf(f"web{i:02}") for i in range(11))
    )
    cert_repo.commit()

    lines = plan(cert_repo, "--format", "markdown").splitlines()

    assert lines[:6] == [
        "**gitcert plan:** 11 Certificates changed against `base`: 11 to issue; 1 other "
        "pending change(s) (renewals, repairs).",
        "",
        "<details>",
        "<summary>11 changed objects</summary>",
        "",
        "| object | change | action | reason | names | private key | issuer | duration "
        "| other fields | renewal time |",
    ]
    assert lines[7].startswith("| `Certificate/default/web00` | added | issue |")
    assert lines[17].startswith("| `Certificate/default/web10` | added | issue |")
    assert lines[18:21] == ["", "</details>", ""]


def test_an_invalid_base_shows_every_object_as_added(cert_repo: CertRepo) -> None:
    on_main(cert_repo, BOOTSTRAP + leaf("web", duration="10m"), apply=False)
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP + leaf("web"))
    cert_repo.commit()

    summary = json.loads(plan(cert_repo, "--format", "json"))["review"]["summary"]

    assert summary == "2 Certificates changed against `base`: 2 to issue."


def test_bundles_added_and_changed(cert_repo: CertRepo) -> None:
    on_main(cert_repo, BOOTSTRAP + BUNDLE.format(name="old"))
    changed = BUNDLE.format(name="old") + "  options: {excludeExpired: true}\n"
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP + changed + BUNDLE.format(name="new"))
    cert_repo.commit()

    document = json.loads(plan(cert_repo, "--format", "json"))

    assert document["review"]["summary"] == ("2 Bundles changed against `base`: 1 bundle to write.")
    assert document["review"]["bundles"] == [
        {
            "bundle": "new",
            "change": "added",
            "file": "manifests/pki.yaml",
            "line": 39,
            "action": "create-bundle",
            "reason": "SourcesChanged",
            "sourcesAdded": ["secret root-ca/ca.crt"],
            "sourcesRemoved": [],
            "otherFields": [],
            "targets": ["bundles/cert-manager/new.yaml"],
        },
        {
            "bundle": "old",
            "change": "changed",
            "file": "manifests/pki.yaml",
            "line": 28,
            "action": "none",
            "reason": "",
            "sourcesAdded": [],
            "sourcesRemoved": [],
            "otherFields": ["options.excludeExpired"],
            "targets": [],
        },
    ]


def test_the_text_form_ends_with_both_summaries(cert_repo: CertRepo) -> None:
    on_main(cert_repo, BOOTSTRAP + leaf("web"))
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP + leaf("web") + leaf("shop"))
    cert_repo.commit()

    assert plan(cert_repo).splitlines()[-2:] == [
        "1 Certificate changed against base: 1 to issue.",
        "Plan: 1 to issue; 2 up to date.",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("plan", "--base", "nope"),
            "error: unknown ref 'nope' (not a branch, tag or commit here)",
        ),
        (("apply", "--renew", "nope"), "error: no Certificate named 'nope'"),
        (("apply", "--renew", "other/web"), "error: no Certificate named 'web' in namespace other"),
    ],
)
def test_unknown_names_are_errors(cert_repo: CertRepo, args: tuple[str, ...], message: str) -> None:
    on_main(cert_repo, BOOTSTRAP + leaf("web"), apply=False)
    result = cert_repo.gitcert(*args)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [message]
