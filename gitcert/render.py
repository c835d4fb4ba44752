"""Plans and status as people and programs read them: a table, Markdown, JSON.

The JSON forms are an interface (CI jobs parse them); change them only by adding keys.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gitcert.clock import format_instant
from gitcert.errors import Problem
from gitcert.policies import Action
from gitcert.reconcile import CertificateState, Plan, PlannedChange
from gitcert.review import BundleReview, CertificateReview, Move, Review

JSON_FORMAT_VERSION = "1"
_ORDER = [
    Action.ISSUE,
    Action.REISSUE,
    Action.RENEW,
    Action.UPDATE_METADATA,
    Action.UPDATE_STATUS,
    Action.WAIT,
]
_STYLE = {
    Action.ISSUE: "green",
    Action.REISSUE: "yellow",
    Action.RENEW: "cyan",
    Action.UPDATE_METADATA: "blue",
    Action.UPDATE_STATUS: "dim",
    Action.WAIT: "magenta",
}


def _time(value: datetime | None) -> str:
    return format_instant(value) if value is not None else ""


def summary(plan: Plan) -> str:
    counts = Counter(c.decision.action for c in plan.changes)
    parts = [f"{counts[a]} to {a}" for a in _ORDER if counts[a]]
    waiting = f", {counts[Action.WAIT]} waiting" if counts[Action.WAIT] else ""
    parts = [p for p in parts if not p.endswith(f"to {Action.WAIT}")]
    if plan.bundle_changes:
        parts.append(f"{len(plan.bundle_changes)} bundle file(s) to write")
    up_to_date = counts[Action.NONE]
    if not parts:
        return f"No changes. {up_to_date} certificate(s) up to date{waiting}."
    return f"Plan: {', '.join(parts)}; {up_to_date} up to date{waiting}."


def _rows(plan: Plan) -> Sequence[PlannedChange]:
    return [c for c in plan.changes if c.decision.action is not Action.NONE]


def plan_text(plan: Plan, console: Console, review: Review | None = None) -> None:
    if review is not None:
        review_text(plan, review, console)
        return
    rows = _rows(plan)
    if rows or plan.bundle_changes:
        table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
        for column in ("object", "action", "reason", "message", "renewal time"):
            table.add_column(column, overflow="fold")
        for change in rows:
            d = change.decision
            style = _STYLE.get(d.action, "")
            table.add_row(
                escape(str(change.key)),
                f"[{style}]{d.action}[/]",
                d.reason,
                escape(d.message),
                _time(d.renewal_time),
            )
        for bundle in plan.bundle_changes:
            table.add_row(
                escape(f"Bundle/{bundle.bundle}"),
                f"[blue]{bundle.action}[/]",
                "SourcesChanged",
                escape(f"{bundle.path}: {bundle.message}"),
                "",
            )
        console.print(table)
        console.print()
    console.print(summary(plan))


def plan_markdown(plan: Plan, review: Review | None = None) -> str:
    if review is not None:
        return review_markdown(plan, review)
    lines = ["### gitcert plan", ""]
    rows = [
        [f"`{c.key}`", f"**{c.decision.action}**", c.decision.reason, c.decision.message,
         _time(c.decision.renewal_time)]
        for c in _rows(plan)
    ]  # fmt: skip
    rows += [
        [f"`Bundle/{b.bundle}`", f"**{b.action}**", "SourcesChanged",
         f"`{b.path}`: {b.message}", ""]
        for b in plan.bundle_changes
    ]  # fmt: skip
    if rows:
        lines += ["| object | action | reason | message | renewal time |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        lines.append("")
    lines += [f":x: {error}\n" for error in plan.bundle_errors]
    lines += [f":warning: {finding.message}\n" for finding in plan.budget]
    lines.append(summary(plan))
    if plan.commit:
        lines += [
            "",
            f"<sub>planned at commit {plan.commit[:12]}, {format_instant(plan.now)}</sub>",
        ]
    return "\n".join(lines) + "\n"


def plan_json(plan: Plan, review: Review | None = None) -> str:
    changes: list[dict[str, Any]] = []
    for change in plan.changes:
        d = change.decision
        changes.append(
            {
                "object": str(change.key),
                "kind": change.key.kind,
                "namespace": change.key.namespace,
                "name": change.key.name,
                "secret": f"{change.spec.namespace}/{change.spec.secret_name}",
                "action": str(d.action),
                "reason": d.reason,
                "message": d.message,
                "renewalTime": _time(d.renewal_time) or None,
            }
        )
    counts = Counter(str(c.decision.action) for c in plan.changes)
    document = {
        "formatVersion": JSON_FORMAT_VERSION,
        "commit": plan.commit,
        "now": format_instant(plan.now),
        "hasChanges": plan.has_changes,
        "summary": dict(sorted(counts.items())),
        "changes": changes,
        "bundles": [
            {
                "bundle": change.bundle,
                "path": change.path,
                "action": change.action,
                "added": [{"subject": s, "sha256": f} for s, f in change.added],
                "removed": [{"subject": s, "sha256": f} for s, f in change.removed],
            }
            for change in plan.bundle_changes
        ],
        "bundleErrors": list(plan.bundle_errors),
        "acmeBudget": [
            {
                "limit": f.limit,
                "subject": f.subject,
                "planned": f.planned,
                "recent": f.recent,
                "allowed": f.allowed,
                "message": f.message,
            }
            for f in plan.budget
        ],
    }
    if review is not None:
        document["review"] = review_json(review)
    return json.dumps(document, indent=2) + "\n"


def status_text(rows: Sequence[CertificateState], console: Console) -> None:
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for column in ("certificate", "ready", "not after", "renewal time", "last reason"):
        table.add_column(column, overflow="fold")
    for row in rows:
        ready = "[green]True[/]" if row.ready else f"[red]False[/] ({row.reason})"
        table.add_row(
            escape(str(row.key)),
            ready,
            _time(row.not_after),
            _time(row.renewal_time),
            escape(row.last_reason),
        )
    console.print(table)


def status_json(rows: Sequence[CertificateState]) -> str:
    document = [
        {
            "certificate": str(row.key),
            "namespace": row.key.namespace,
            "name": row.key.name,
            "ready": row.ready,
            "reason": row.reason,
            "message": row.message,
            "notAfter": _time(row.not_after) or None,
            "renewalTime": _time(row.renewal_time) or None,
            "lastReason": row.last_reason,
        }
        for row in rows
    ]
    return json.dumps(document, indent=2) + "\n"


# --- a pull request's review (plan --base) ------------------------------------------------------

# Past this many rows a PR comment folds its table, so the thread stays readable.
REVIEW_FOLD_ROWS = 10
# Past this many names a cell says how many more; the JSON lists them all.
_NAMES_SHOWN = 5


def _moved(move: Move | None) -> str:
    return f"{move.before} → {move.after}" if move is not None else ""


def _names_cell(added: Sequence[str], removed: Sequence[str], code: bool) -> str:
    def show(sign: str, names: Sequence[str]) -> list[str]:
        shown = [f"{sign}`{n}`" if code else f"{sign}{n}" for n in names[:_NAMES_SHOWN]]
        more = len(names) - _NAMES_SHOWN
        return [*shown, f"{sign}{more} more"] if more > 0 else shown

    return " ".join([*show("+", added), *show("-", removed)])


def _renewal_cell(review: CertificateReview) -> str:
    if review.renewal_time is None:
        return ""
    estimated = " (if issued now)" if review.renewal_estimated else ""
    return f"{format_instant(review.renewal_time)}{estimated}"


def _certificate_cells(review: CertificateReview, code: bool) -> list[str]:
    other = ", ".join(review.other_fields)
    return [
        review.change,
        str(review.action),
        review.reason,
        _names_cell(review.names_added, review.names_removed, code),
        _moved(review.private_key),
        _moved(review.issuer),
        _moved(review.duration),
        other,
        _renewal_cell(review),
    ]


def _bundle_cells(review: BundleReview, code: bool) -> list[str]:
    cas = dict.fromkeys(t.message for t in review.targets)
    sources = _names_cell(review.sources_added, review.sources_removed, code)
    return [
        review.change,
        review.action,
        review.reason,
        "; ".join(p for p in (sources, *cas) if p),
        "",
        "",
        "",
        ", ".join(review.other_fields),
        "",
    ]


_REVIEW_COLUMNS = (
    "object", "change", "action", "reason", "names", "private key", "issuer", "duration",
    "other fields", "renewal time",
)  # fmt: skip


def review_text(plan: Plan, review: Review, console: Console) -> None:
    if review.rows:
        table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
        for column in _REVIEW_COLUMNS:
            table.add_column(column, overflow="fold")
        for cert in review.certificates:
            style = _STYLE.get(cert.action, "")
            cells = [escape(c) for c in _certificate_cells(cert, code=False)]
            cells[1] = f"[{style}]{cells[1]}[/]" if style else cells[1]
            table.add_row(escape(str(cert.key)), *cells)
        for bundle in review.bundles:
            cells = [escape(c) for c in _bundle_cells(bundle, code=False)]
            table.add_row(escape(f"Bundle/{bundle.name}"), *cells)
        console.print(table)
        console.print()
    console.print(review.summary().replace("`", ""))
    console.print(summary(plan))


def review_markdown(plan: Plan, review: Review) -> str:
    """A pull-request comment: one summary line, the changed objects, the whole plan's line.

    The first line stands alone, so a folded notification or a long thread still says it.
    """
    lines = [f"**gitcert plan:** {review.summary()}", ""]
    rows = [[f"`{c.key}`", *_certificate_cells(c, code=True)] for c in review.certificates]
    rows += [[f"`Bundle/{b.name}`", *_bundle_cells(b, code=True)] for b in review.bundles]
    if rows:
        table = ["| " + " | ".join(_REVIEW_COLUMNS) + " |", "|---" * len(_REVIEW_COLUMNS) + "|"]
        table += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
        if len(rows) > REVIEW_FOLD_ROWS:
            summary_line = f"<summary>{len(rows)} changed objects</summary>"
            table = ["<details>", summary_line, "", *table, "", "</details>"]
        lines += [*table, ""]
    lines += [f":x: {error}\n" for error in plan.bundle_errors]
    lines.append(f"Whole repository: {summary(plan)}")
    base = f" against {review.base_commit[:12]}" if review.base_commit else ""
    if plan.commit:
        lines += [
            "",
            f"<sub>planned at commit {plan.commit[:12]}{base}, {format_instant(plan.now)}</sub>",
        ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _move_json(move: Move | None) -> dict[str, str] | None:
    return {"from": move.before, "to": move.after} if move is not None else None


def review_json(review: Review) -> dict[str, Any]:
    return {
        "base": review.base,
        "baseCommit": review.base_commit,
        "summary": review.summary(),
        "otherPending": review.other_pending,
        "certificates": [
            {
                "object": str(c.key),
                "namespace": c.key.namespace,
                "name": c.key.name,
                "change": c.change,
                "file": c.source.path,
                "line": c.source.line,
                "action": str(c.action),
                "reason": c.reason,
                "message": c.message,
                "renewalTime": _time(c.renewal_time) or None,
                "renewalTimeEstimated": c.renewal_estimated,
                "namesAdded": list(c.names_added),
                "namesRemoved": list(c.names_removed),
                "privateKey": _move_json(c.private_key),
                "issuerRef": _move_json(c.issuer),
                "duration": _move_json(c.duration),
                "otherFields": list(c.other_fields),
            }
            for c in review.certificates
        ],
        "bundles": [
            {
                "bundle": b.name,
                "change": b.change,
                "file": b.source.path,
                "line": b.source.line,
                "action": b.action,
                "reason": b.reason,
                "sourcesAdded": list(b.sources_added),
                "sourcesRemoved": list(b.sources_removed),
                "otherFields": list(b.other_fields),
                "targets": [t.path for t in b.targets],
            }
            for b in review.bundles
        ],
    }


def problems_markdown(problems: Sequence[Problem]) -> str:
    """Invalid manifests, for a pull request: nothing can be planned until they are fixed."""
    lines = [
        f"**gitcert plan:** {len(problems)} problem(s) in the manifests; nothing was planned.",
        "",
    ]
    for p in problems:
        where = p.path if p.line is None else f"{p.path}:{p.line}"
        field = f" `{p.field}`" if p.field else ""
        lines.append(f"- `{where}`{field}: {p.message}")
    return "\n".join(lines) + "\n"
