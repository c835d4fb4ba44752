"""Which solver validates which name: cert-manager's selector rules, without any I/O.

Kept apart from the solvers themselves so that validate and plan can check a
Certificate's names against an issuer's solvers without importing DNS or HTTP code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SolverSpec:
    index: int
    type: str
    """``http01`` or ``dns01``."""
    kind: str
    """``webroot``, ``standalone``, ``rfc2136`` or ``exec``."""
    config: Mapping[str, Any]
    dns_names: tuple[str, ...] = ()
    dns_zones: tuple[str, ...] = ()


def solver_specs(solvers: Sequence[Mapping[str, Any]]) -> list[SolverSpec]:
    specs = []
    for index, solver in enumerate(solvers):
        selector = solver.get("selector") or {}
        challenge_type = "http01" if "http01" in solver else "dns01"
        body = dict(solver[challenge_type])
        timeout = body.pop("propagationTimeout", None)
        ((kind, config),) = body.items()
        config = dict(config or {})
        if timeout is not None:
            config["propagationTimeout"] = timeout
        specs.append(
            SolverSpec(
                index,
                challenge_type,
                kind,
                config,
                tuple(n.lower().rstrip(".") for n in selector.get("dnsNames", ())),
                tuple(z.lower().rstrip(".") for z in selector.get("dnsZones", ())),
            )
        )
    return specs


def select(specs: Sequence[SolverSpec], name: str) -> SolverSpec | None:
    """The solver for ``name``, by cert-manager's rules.

    A selector naming the exact name wins; then the longest matching ``dnsZones`` entry;
    then a solver with no selector. Wildcards can only be validated over DNS-01 (RFC 8555
    section 7.1.3), so HTTP-01 solvers are never chosen for them. Ties go to list order.
    """
    wildcard = name.startswith("*.")
    base = name.removeprefix("*.")
    best: tuple[int, int, SolverSpec] | None = None
    for spec in specs:
        if wildcard and spec.type != "dns01":
            continue
        score = _score(spec, name, base)
        if score is not None and (best is None or score > best[0]):
            best = (score, -spec.index, spec)
    return best[2] if best else None


def _score(spec: SolverSpec, name: str, base: str) -> int | None:
    if spec.dns_names:
        return 10_000 if name in spec.dns_names or base in spec.dns_names else None
    if spec.dns_zones:
        matches = [z for z in spec.dns_zones if base == z or base.endswith("." + z)]
        return 100 + max(len(z.split(".")) for z in matches) if matches else None
    return 0


def needs_dns01(specs: Sequence[SolverSpec], name: str) -> str | None:
    """Why ``name`` cannot be validated with these solvers, or None."""
    if select(specs, name) is not None:
        return None
    if name.startswith("*.") and select([s for s in specs if s.type == "http01"], name[2:]):
        return (
            f"{name} is a wildcard, which only DNS-01 can validate, and no dns01 solver "
            "matches it; add a dns01 solver (rfc2136 or exec)"
        )
    return f"no ACME solver matches {name}; add one whose selector covers it"
