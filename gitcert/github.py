"""GitHub Actions: annotations, the step summary, step outputs and the plan's PR comment.

Inside a workflow (``GITHUB_ACTIONS=true``) the commands also report through the runner's
channels, so a pull request shows what a terminal would:

- invalid manifests, policy refusals and failed certificates become annotations
  (``::error file=...,line=...,title=...::message``) at the manifest's line, which GitHub
  shows beside the pull request's diff;
- the plan, as Markdown, is appended to the file ``$GITHUB_STEP_SUMMARY`` names, and
  written with the JSON plan under ``$RUNNER_TEMP/gitcert/``;
- ``has_changes``, ``plan_json`` and ``plan_markdown`` (and for apply, ``commit``) go to
  ``$GITHUB_OUTPUT``.

:class:`CommentClient` keeps one comment per pull request up to date through GitHub's REST
API (``$GITHUB_API_URL``), found again by a hidden marker. :func:`oidc_token` asks the
runner for the job's OpenID Connect token, for Vault's JWT login.

Tokens travel in headers only: nothing here logs, prints or annotates one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from gitcert import __version__, gitops
from gitcert.errors import GitcertError, Problem, UserError
from gitcert.policies import Action
from gitcert.reconcile import ApplyResult, Plan

log = logging.getLogger(__name__)

MARKER = "<!-- gitcert-plan -->"
"""Opens the body of gitcert's comment on a pull request, to find it again."""

# GitHub refuses comment bodies over 65,536 characters and reads at most 1 MiB of a step's
# summary; past those the text is cut at a line, with a note where to read the rest.
COMMENT_LIMIT = 65_536
SUMMARY_LIMIT = 1024 * 1024
_TRUNCATED = "\n\n… (truncated: the whole plan is in the job's step summary and plan JSON)\n"

API_VERSION = "2022-11-28"
TOKEN_ENV = "GITHUB_TOKEN"

# A token without write access gets these answers: a fork's pull request (its token is
# read-only), or a workflow without `permissions: pull-requests: write`.
_CANNOT_WRITE = {401, 403, 404}


def active() -> bool:
    """Whether this process runs as a step of a GitHub Actions job."""
    return os.environ.get("GITHUB_ACTIONS") == "true"


# --- workflow commands --------------------------------------------------------------------------


def escape_data(text: str) -> str:
    """A command's message: ``%``, CR and LF would end or corrupt the command line."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A command's property value: also ``:`` and ``,``, which separate the properties."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


@dataclass(frozen=True)
class Annotation:
    """One ``::error``/``::warning``/``::notice`` workflow command."""

    level: str
    message: str
    title: str = ""
    file: str = ""
    line: int | None = None

    def __str__(self) -> str:
        properties = [("file", self.file), ("line", str(self.line or "")), ("title", self.title)]
        given = ",".join(f"{k}={escape_property(v)}" for k, v in properties if v)
        return f"::{self.level}{' ' + given if given else ''}::{escape_data(self.message)}"


def emit(annotations: Sequence[Annotation], stream: TextIO | None = None) -> None:
    """Print the commands where the runner reads them: each on a line of its own."""
    out = stream if stream is not None else sys.stdout
    for annotation in annotations:
        out.write(f"{annotation}\n")
    out.flush()


def workspace_prefix(repo_path: str | Path | None) -> str:
    """The cert repo's place in ``$GITHUB_WORKSPACE`` (``""`` or ``"certs/"``).

    Manifest paths are relative to the cert repo; annotations must be relative to the
    workspace, or GitHub cannot put them beside the diff.
    """
    workspace = os.environ.get("GITHUB_WORKSPACE")
    if not workspace or repo_path is None:
        return ""
    try:
        workdir = gitops.open_repo(repo_path).workdir
    except GitcertError:
        return ""
    if workdir is None:
        return ""
    relative = os.path.relpath(os.path.realpath(workdir), os.path.realpath(workspace))
    if relative == "." or relative.startswith(".."):
        return ""
    return relative.replace(os.sep, "/") + "/"


def problem_annotations(problems: Sequence[Problem], prefix: str = "") -> list[Annotation]:
    return [
        Annotation("error", p.message, p.field or "gitcert", prefix + p.path, p.line)
        for p in problems
    ]


def plan_annotations(plan: Plan, prefix: str = "") -> list[Annotation]:
    """Bundle errors, the ACME budget's findings, and certificates waiting out a backoff."""
    found = [Annotation("error", error, "Bundle") for error in plan.bundle_errors]
    budget_level = "error" if plan.config.acme_limits.fail else "warning"
    found += [Annotation(budget_level, f.message, "ACME budget") for f in plan.budget]
    for change in plan.changes:
        decision, source = change.decision, change.spec.source
        if decision.action is Action.WAIT:
            message = f"{decision.reason}: {decision.message}"
            title = f"{change.key} waiting"
            found.append(Annotation("warning", message, title, prefix + source.path, source.line))
    return found


def apply_annotations(result: ApplyResult, prefix: str = "") -> list[Annotation]:
    """Each certificate that failed to issue, at its manifest; each bundle that failed."""
    found = []
    for outcome in result.failed:
        change = outcome.change
        title = f"{change.key} failed to {change.decision.action}"
        source = change.spec.source
        found.append(Annotation("error", outcome.message, title, prefix + source.path, source.line))
    found += [Annotation("error", failure, "Bundle") for failure in result.bundle_failures]
    return found


# --- step summary, outputs and report files -----------------------------------------------------


def fit(text: str, limit: int) -> str:
    """``text`` cut at a line so that it and the truncation note stay within ``limit``."""
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit - len(_TRUNCATED))
    return text[: max(cut, 0)] + _TRUNCATED


def append_summary(markdown: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as summary:
        summary.write(fit(markdown, SUMMARY_LIMIT))


def set_outputs(values: Mapping[str, str]) -> None:
    """Append ``name=value`` lines to ``$GITHUB_OUTPUT`` (a delimited block if multi-line)."""
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as outputs:
        for name, value in values.items():
            if "\n" in value or "\r" in value:
                delimiter = f"ghadelimiter_{uuid.uuid4()}"
                outputs.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
            else:
                outputs.write(f"{name}={value}\n")


def report_dir() -> Path:
    """Where the plan's files go: the runner's temporary directory, emptied after the job."""
    base = os.environ.get("RUNNER_TEMP") or os.environ.get("TMPDIR") or "/tmp"
    directory = Path(base) / "gitcert"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def publish_plan(
    plan: Plan, markdown: str, json_text: str, prefix: str, stream: TextIO | None = None
) -> None:
    """Annotations, the step summary, ``plan.json``/``plan.md`` and the step's outputs."""
    emit(plan_annotations(plan, prefix), stream)
    directory = report_dir()
    json_path, markdown_path = directory / "plan.json", directory / "plan.md"
    json_path.write_text(json_text, encoding="utf-8")
    markdown_path.write_text(markdown, encoding="utf-8")
    append_summary(markdown)
    set_outputs(
        {
            "has_changes": "true" if plan.has_changes else "false",
            "plan_json": str(json_path),
            "plan_markdown": str(markdown_path),
        }
    )


def publish_problems(problems: Sequence[Problem], markdown: str, prefix: str) -> None:
    """Invalid manifests: annotations, and the report a pull request's comment shows."""
    emit(problem_annotations(problems, prefix))
    markdown_path = report_dir() / "plan.md"
    markdown_path.write_text(markdown, encoding="utf-8")
    append_summary(markdown)
    set_outputs({"plan_markdown": str(markdown_path)})


def publish_error(message: str) -> None:
    emit([Annotation("error", message, "gitcert")])


def publish_apply(
    plan: Plan, result: ApplyResult | None, markdown: str, applied: str, prefix: str
) -> None:
    """What apply did: failures as annotations, the plan and outcome in the summary."""
    if result is not None:
        emit(apply_annotations(result, prefix))
    append_summary(f"{markdown}\n{applied}\n")
    commit = result.commit if result is not None and result.commit else ""
    set_outputs({"has_changes": "true" if plan.has_changes else "false", "commit": commit})


# --- the REST API: one sticky comment per pull request -----------------------------------------


@dataclass(frozen=True)
class PullRequest:
    number: int
    fork: bool
    """Opened from another repository: its token cannot write to this one."""


def pull_request(event_path: str | None) -> PullRequest | None:
    """The pull request of the event that started the job, if it was about one."""
    if not event_path or not os.path.exists(event_path):
        return None
    with open(event_path, encoding="utf-8") as f:
        event = json.load(f)
    pr = event.get("pull_request")
    if not isinstance(pr, dict) or not isinstance(pr.get("number"), int):
        return None
    head = ((pr.get("head") or {}).get("repo") or {}).get("full_name")
    base = ((pr.get("base") or {}).get("repo") or {}).get("full_name")
    return PullRequest(pr["number"], fork=bool(head and base and head != base))


class CannotWriteError(GitcertError):
    """GitHub refused the token (fork, missing permission): the summary has to do."""


class GitHubAPIError(GitcertError):
    """Any other failed call; ``status`` is the HTTP status, or 0 without an answer."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


_NEXT_LINK = re.compile(r'<([^>]+)>;\s*rel="next"')


class CommentClient:
    """Issue comments of one repository (a pull request is an issue to this API)."""

    def __init__(self, api_url: str, repository: str, token: str, timeout: float = 30) -> None:
        self.api_url = api_url.rstrip("/")
        self.repository = repository
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"CommentClient({self.api_url!r}, {self.repository!r})"  # never the token

    def _call(
        self, method: str, url: str, body: Mapping[str, Any] | None = None
    ) -> tuple[Any, str | None]:
        """The decoded answer, and the URL of the next page when the answer has one."""
        if not url.startswith(self.api_url + "/"):
            # A Link header pointing elsewhere would take our token with it.
            raise GitHubAPIError(f"refusing to follow {url}: not under {self.api_url}")
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self._token}",
            "User-Agent": f"gitcert/{__version__}",
            "X-GitHub-Api-Version": API_VERSION,
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        path = urllib.parse.urlsplit(url).path
        log.debug("%s %s", method, path)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read() or b"null")
                return answer, _next_link(response.headers.get("Link", ""))
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the response open; an unclosed socket would leak
            if exc.code in _CANNOT_WRITE:
                raise CannotWriteError(f"{method} {path}: HTTP {exc.code}") from exc
            raise GitHubAPIError(f"{method} {path}: HTTP {exc.code}", exc.code) from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise GitHubAPIError(f"{method} {path}: {exc}") from exc

    def find(self, number: int) -> int | None:
        """The id of gitcert's comment on pull request ``number``, reading every page."""
        url: str | None = f"{self._repo_url()}/issues/{number}/comments?per_page=100"
        while url is not None:
            comments, url = self._call("GET", url)
            for comment in comments or []:
                if str(comment.get("body") or "").startswith(MARKER):
                    return int(comment["id"])
        return None

    def upsert(self, number: int, body: str) -> str:
        """Update gitcert's comment, or create it; returns what was done and its URL.

        A marked comment we may not edit (someone else wrote the marker) is passed over
        for a new one.
        """
        existing = self.find(number)
        if existing is not None:
            try:
                answer, _ = self._call(
                    "PATCH", f"{self._repo_url()}/issues/comments/{existing}", {"body": body}
                )
                return f"updated comment {answer.get('html_url', existing)}"
            except CannotWriteError:
                log.warning("comment %s carries gitcert's marker but is not ours", existing)
        url = f"{self._repo_url()}/issues/{number}/comments"
        answer, _ = self._call("POST", url, {"body": body})
        return f"created comment {answer.get('html_url', '')}".rstrip()

    def _repo_url(self) -> str:
        return f"{self.api_url}/repos/{self.repository}"


def _next_link(header: str) -> str | None:
    match = _NEXT_LINK.search(header)
    return match.group(1) if match else None


def comment(body_file: Path, token_env: str = TOKEN_ENV) -> str:
    """Post or update the plan comment of this job's pull request; says what happened.

    Where no comment can be written (not a pull request, a fork's read-only token, no
    token, a refusal from GitHub) the step summary already holds the plan: a notice says
    so and the step succeeds.

    Raises:
        UserError: the body file or the workflow's environment is missing.
        GitHubAPIError: GitHub failed otherwise (5xx, no answer).
    """
    if not body_file.exists():
        raise UserError(f"{body_file} does not exist: run gitcert plan first")
    pr = pull_request(os.environ.get("GITHUB_EVENT_PATH"))
    if pr is None:
        return "not a pull request: no comment"
    if pr.fork:
        return _skipped(f"pull request #{pr.number} comes from a fork, whose token is read-only")
    token = os.environ.get(token_env, "")
    if not token:
        return _skipped(f"${token_env} is empty")

    repository = os.environ.get("GITHUB_REPOSITORY", "")
    if not repository:
        raise UserError("$GITHUB_REPOSITORY is not set: is this a GitHub Actions job?")
    api_url = os.environ.get("GITHUB_API_URL") or "https://api.github.com"
    body = fit(f"{MARKER}\n{body_file.read_text(encoding='utf-8')}", COMMENT_LIMIT)
    client = CommentClient(api_url, repository, token)
    try:
        done = client.upsert(pr.number, body)
    except CannotWriteError as exc:
        return _skipped(
            f"GitHub refused the token ({exc}); a fork's pull request gets a read-only token, "
            "and others need `permissions: pull-requests: write`"
        )
    log.info("pull request #%d: %s", pr.number, done)
    return f"pull request #{pr.number}: {done}"


def _skipped(why: str) -> str:
    message = f"no plan comment: {why}; the plan is in the step summary"
    emit([Annotation("notice", message, "gitcert plan")])
    return message


# --- the job's OpenID Connect token -------------------------------------------------------------


def oidc_token(audience: str, timeout: float = 30) -> str:
    """The job's OIDC token (a JWT) for ``audience``, from the runner's token service.

    Raises:
        UserError: the job may not have one (``permissions: id-token: write`` is missing).
        GitHubAPIError: the token service failed.
    """
    url = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL", "")
    request_token = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "")
    if not url or not request_token:
        raise UserError(
            "ACTIONS_ID_TOKEN_REQUEST_URL/TOKEN are not set: the job needs "
            "`permissions: id-token: write` to log in to Vault with its OIDC token"
        )
    separator = "&" if "?" in url else "?"
    full = f"{url}{separator}audience={urllib.parse.quote(audience, safe='')}"
    request = urllib.request.Request(
        full,
        headers={"Authorization": f"bearer {request_token}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            value = json.loads(response.read()).get("value")
    except urllib.error.HTTPError as exc:
        exc.close()
        raise GitHubAPIError(f"the OIDC token service answered HTTP {exc.code}", exc.code) from exc
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        raise GitHubAPIError(f"the OIDC token service failed: {exc}") from exc
    if not isinstance(value, str) or not value:
        raise GitHubAPIError("the OIDC token service answered without a token")
    return value
