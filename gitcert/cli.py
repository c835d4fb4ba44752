"""The ``gitcert`` command line: thin commands that parse options, call reconcile, render.

Exit codes (the same for every command):

- 0: success; for ``plan --detailed-exitcode``, success with nothing to do;
- 1: an error (bad manifests, a failed certificate, sops or git trouble);
- 2: ``plan --detailed-exitcode`` only: success, and there are changes to apply.

A user's mistake is printed as ``error: file:line: field: what was expected`` with no
traceback. Anything else is a bug, and its traceback is shown.
"""

from __future__ import annotations

import functools
import gc
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from gitcert import __version__, clock, github, gitops, log, reconcile, render, review, scaffold
from gitcert.errors import GitcertError, ManifestError, UserError
from gitcert.model import Config

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2

F = TypeVar("F", bound=Callable[..., Any])

# Off a terminal (CI logs, pipes) rich would assume 80 columns and fold every table cell.
stdout = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def repo_options(func: F) -> F:
    """--repo, --ref and --now, shared by every command that reads a cert repo."""
    func = click.option(
        "--now",
        metavar="TIME",
        help=f"Pretend it is TIME (RFC 3339, e.g. 2027-01-01T00:00:00Z). Also ${clock.NOW_ENV}.",
    )(func)
    func = click.option(
        "--ref", metavar="REF", help="Read manifests at this commit, branch or tag [HEAD]."
    )(func)
    func = click.option(
        "--repo",
        "repo_path",
        default=".",
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="The cert repository.",
    )(func)
    return func


def _error(message: str) -> None:
    # Messages quote the user's values; "[bold]" in a secretName must print as typed.
    stderr.print(f"[red]error:[/] {escape(message)}")


def _warn_uncommitted(repo: gitops.Repository, ref: str | None, config: Config) -> None:
    """Manifests are read from the commit; say so when the work tree holds edits to them.

    Only for people at a terminal: a CI checkout is clean, and looking costs a work-tree
    scan on big repos.
    """
    if ref is not None or not sys.stderr.isatty():
        return
    watched = (*config.manifest_paths, "gitcert.yaml", ".sops.yaml")
    for path in gitops.uncommitted(repo, watched):
        stderr.print(
            f"[yellow]warning:[/] {escape(path)} has uncommitted changes; gitcert reads "
            "the commit (HEAD), not the work tree: commit them to include them"
        )


def handle_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ManifestError as exc:
            if github.active():
                prefix = github.workspace_prefix(kwargs.get("repo_path"))
                report = render.problems_markdown(exc.problems)
                github.publish_problems(exc.problems, report, prefix)
            for problem in exc.problems:
                _error(str(problem))
            stderr.print(f"{len(exc.problems)} problem(s) found; nothing was written.")
            sys.exit(EXIT_ERROR)
        except GitcertError as exc:
            if github.active():
                github.publish_error(str(exc))
            _error(str(exc))
            sys.exit(EXIT_ERROR)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="-v shows decisions, -vv mechanics.")
@click.version_option(__version__, prog_name="gitcert")
def cli(verbose: int) -> None:
    """Certificates and trust bundles, reconciled from a git repository."""
    log.setup(verbose)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--age-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Store the new age identity here [default: where sops looks].",
)
@click.option(
    "--age-recipient",
    "recipients",
    multiple=True,
    metavar="AGE1...",
    help="Encrypt to this existing recipient instead of making a new key (repeatable).",
)
@click.option(
    "--from",
    "template",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Copy this cert repo's files (e.g. examples-repo), except .git, secrets/, status/ "
    "and .sops.yaml.",
)
@handle_errors
def init(
    directory: Path, age_key_file: Path | None, recipients: tuple[str, ...], template: Path | None
) -> None:
    """Create a new cert repository in DIRECTORY, with a new age key unless given recipients."""
    result = scaffold.init(directory, age_key_file, list(recipients), template)
    stdout.print(f"Initialised a cert repo in {result.path} (commit {result.commit[:12]}).")
    stdout.print(f"Secrets are encrypted to age recipient {result.recipient}")
    if not recipients:
        stdout.print(f"Its identity (private key) is in {result.key_file}; keep it secret.")
    stdout.print(f"Next: gitcert plan --repo {result.path}")


@cli.command()
@repo_options
@handle_errors
def validate(repo_path: Path, ref: str | None, now: str | None) -> None:
    """Check every manifest; print each problem with file, line and field."""
    tree = gitops.resolve(gitops.open_repo(repo_path), ref)
    desired, _ = reconcile.validate(tree)
    # Bundle sources are checked too: a pasted private key must stop here, before merge.
    errors = reconcile.bundle_errors(desired, tree, clock.from_option(now)())
    for error in errors:
        _error(error)
    if errors:
        sys.exit(EXIT_ERROR)
    counts = (
        f"{len(desired.certificates)} certificate(s), {len(desired.issuers)} issuer(s), "
        f"{len(desired.bundles)} bundle(s) and {len(desired.policies)} policy(ies)"
    )
    stdout.print(f"{counts} are valid.")


@cli.command()
@repo_options
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text")
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there is nothing to do, 2 when there are changes, 1 on error.",
)
@click.option("--shard", metavar="K/N", help="Only shard K of N of the Certificates (matrix jobs).")
@click.option(
    "--base",
    metavar="REF",
    help="Review against REF (a pull request's base): only the Certificates and Bundles "
    "that differ, and how.",
)
@handle_errors
def plan(
    repo_path: Path,
    ref: str | None,
    now: str | None,
    fmt: str,
    detailed_exitcode: bool,
    shard: str | None,
    base: str | None,
) -> None:
    """Show what apply would do, and why. Never writes anything."""
    repo = gitops.open_repo(repo_path)
    tree = gitops.resolve(repo, ref)
    subset = reconcile.Shard.parse(shard) if shard else None
    result = reconcile.make_plan(tree, clock.from_option(now)(), subset)
    _warn_uncommitted(repo, ref, result.config)
    changed = None
    if base is not None:
        base_state, base_commit = review.load_base(repo, base)
        changed = review.compare(base_state, result, base, base_commit)
    if fmt == "json":
        sys.stdout.write(render.plan_json(result, changed))
    elif fmt == "markdown":
        sys.stdout.write(render.plan_markdown(result, changed))
    else:
        render.plan_text(result, stdout, changed)
    if github.active():
        # With JSON on stdout the workflow commands go to stderr, which the runner reads too.
        github.publish_plan(
            result,
            render.plan_markdown(result, changed),
            render.plan_json(result, changed),
            github.workspace_prefix(repo_path),
            sys.stderr if fmt == "json" else None,
        )
    for error in result.bundle_errors:
        _error(error)
    over_budget = result.budget and result.config.acme_limits.fail
    for finding in result.budget:
        label = "[red]error:[/]" if over_budget else "[yellow]warning:[/]"
        stderr.print(f"{label} {escape(finding.message)}")
    if result.bundle_errors or over_budget:
        sys.exit(EXIT_ERROR)
    if detailed_exitcode and result.has_changes:
        sys.exit(EXIT_CHANGES)


@cli.command()
@repo_options
@click.option("--push", is_flag=True, help="Push the commit to the configured remote and branch.")
@click.option("--shard", metavar="K/N", help="Only shard K of N of the Certificates (matrix jobs).")
@click.option("--renew", metavar="[NAMESPACE/]NAME", help="Renew this Certificate now, due or not.")
@click.option("--author-name", metavar="NAME", help="Commit as NAME [gitcert.yaml's git.author].")
@click.option("--author-email", metavar="EMAIL", help="Commit as EMAIL [gitcert.yaml's].")
@handle_errors
def apply(
    repo_path: Path,
    ref: str | None,
    now: str | None,
    push: bool,
    shard: str | None,
    renew: str | None,
    author_name: str | None,
    author_email: str | None,
) -> None:
    """Issue, renew and repair what the plan says, then commit (and push).

    With --push, a remote that moved meanwhile (another shard pushed first) gets our commit
    replayed on its new head, since shards write different files.
    """
    repo = gitops.open_repo(repo_path)
    target = gitops.branch_target(repo, ref)
    subset = reconcile.Shard.parse(shard) if shard else None
    the_plan = reconcile.make_plan(target.tree, clock.from_option(now)(), subset)
    if renew:
        the_plan = reconcile.request_renewal(the_plan, renew)
    if author_name or author_email:
        the_plan = reconcile.with_author(the_plan, author_name, author_email)
    _warn_uncommitted(repo, ref, the_plan.config)
    render.plan_text(the_plan, stdout)
    if not the_plan.config.acme_limits.fail:
        for finding in the_plan.budget:
            stderr.print(f"[yellow]warning:[/] {escape(finding.message)}")
    result = _apply(the_plan, repo, target) if the_plan.has_changes else None
    if push:
        config = the_plan.config.git
        gitops.push_replaying(repo, config.remote, target.branch, config.branch)
        stdout.print(f"Pushed {target.branch} to {config.remote} {config.branch}.")
    if github.active():
        markdown = render.plan_markdown(the_plan)
        prefix = github.workspace_prefix(repo_path)
        github.publish_apply(the_plan, result, markdown, _applied(result), prefix)
    if result is None and the_plan.bundle_errors:
        # Nothing else to do, but a broken bundle must not pass a scheduled run silently.
        for error in the_plan.bundle_errors:
            _error(error)
        sys.exit(EXIT_ERROR)
    if result is not None and not result.ok:
        sys.exit(EXIT_ERROR)


def _apply(
    the_plan: reconcile.Plan, repo: gitops.Repository, target: gitops.Target
) -> reconcile.ApplyResult:
    total = len(the_plan.pending)  # computed once: Plan.pending builds a new list
    with stdout.status("applying...") as spinner:
        done = 0

        def progress(outcome: reconcile.Outcome) -> None:
            nonlocal done
            done += 1
            spinner.update(f"applying... {done}/{total}")
            if not outcome.ok:
                stderr.print(f"[red]failed:[/] {outcome.change.key}: {escape(outcome.message)}")

        result = reconcile.apply(the_plan, repo, target, progress)

    for failure in result.bundle_failures:
        stderr.print(f"[red]failed:[/] {escape(failure)}")
    stdout.print(_applied(result))
    return result


def _applied(result: reconcile.ApplyResult | None) -> str:
    if result is None:
        return "Nothing to apply."
    ok = len(result.outcomes) - len(result.failed) + len(result.bundle_changes)
    failed = len(result.failed) + len(result.bundle_failures)
    commit = result.commit[:12] if result.commit else "none"
    return f"Applied {ok} change(s), {failed} failed; commit {commit}."


@cli.command()
@click.argument("name")
@click.option("-n", "--namespace", help="The Certificate's namespace, if the name is ambiguous.")
@click.option(
    "--reason",
    type=click.Choice(list(reconcile.REVOCATION_REASONS)),
    default="unspecified",
    show_default=True,
    help="The RFC 5280 revocation reason.",
)
@click.option("--push", is_flag=True, help="Push the commit to the configured remote and branch.")
@repo_options
@handle_errors
def revoke(
    name: str,
    namespace: str | None,
    reason: str,
    push: bool,
    repo_path: Path,
    ref: str | None,
    now: str | None,
) -> None:
    """Revoke the current certificate of Certificate NAME; the next apply reissues it."""
    repo = gitops.open_repo(repo_path)
    target = gitops.branch_target(repo, ref)
    the_plan = reconcile.make_plan(target.tree, clock.from_option(now)())
    change = reconcile.find(the_plan, name, namespace)
    commit = reconcile.revoke(the_plan, repo, target, change, reason)
    stdout.print(f"Revoked {change.key} ({reason}); commit {commit[:12]}.")
    if push:
        config = the_plan.config.git
        gitops.push(repo, config.remote, target.branch, config.branch)


@cli.command()
@repo_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@handle_errors
def status(repo_path: Path, ref: str | None, now: str | None, fmt: str) -> None:
    """Each Certificate: ready, expiry, renewal time and the last thing that happened."""
    tree = gitops.resolve(gitops.open_repo(repo_path), ref)
    rows = reconcile.certificate_states(reconcile.make_plan(tree, clock.from_option(now)()))
    if fmt == "json":
        sys.stdout.write(render.status_json(rows))
    else:
        render.status_text(rows, stdout)


@cli.group(name="github")
def github_group() -> None:
    """Helpers for GitHub Actions jobs (the actions under actions/ call them)."""


@github_group.command(name="comment")
@click.option(
    "--body-file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The Markdown to post (gitcert plan's plan_markdown output).",
)
@click.option(
    "--token-env",
    default=github.TOKEN_ENV,
    show_default=True,
    help="The environment variable holding the token.",
)
@handle_errors
def github_comment(body_file: Path, token_env: str) -> None:
    """Create or update gitcert's one comment on this job's pull request."""
    stdout.print(escape(github.comment(body_file, token_env)))


@github_group.command(name="oidc-token")
@click.option("--audience", required=True, help="The audience (aud) the token is for.")
@handle_errors
def github_oidc_token(audience: str) -> None:
    """Print the job's OIDC token, for capture: TOKEN=$(gitcert github oidc-token ...)."""
    sys.stdout.write(github.oidc_token(audience) + "\n")


def main() -> None:
    # A plan builds many small objects that live for the whole run; the cyclic collector
    # would scan them again and again (about a sixth of a large plan's time).
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    # SIGTERM (a cancelled CI job) unwinds like Ctrl-C: temporary directories are removed
    # and nothing half-done is committed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    cli(prog_name="gitcert")


__all__ = ["EXIT_CHANGES", "EXIT_ERROR", "EXIT_OK", "UserError", "cli", "main"]
