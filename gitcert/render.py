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
from gitcert.policies import Action
from gitcert.reconcile import CertificateState, Plan, PlannedChange

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


def plan_text(plan: Plan, console: Console) -> None:
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


def plan_markdown(plan: Plan) -> str:
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


def plan_json(plan: Plan) -> str:
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
