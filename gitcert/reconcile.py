"""One run: desired state against actual state gives a plan; and the executor that applies a plan.

``make_plan`` is read-only: it loads manifests, gathers Secrets and status records from
the tree, orders Certificates by what they depend on (a CA Certificate before the leaves
its CA issuer signs) and asks :mod:`gitcert.policies` what each needs.

``apply`` executes the plan level by level: every Certificate of a level in parallel, the
next level only once the previous one is done, because its issuers may read what was just
issued. Each Certificate's outcome is recorded on its own (one failure never stops the
others), every file under the secret paths is checked to be SOPS-encrypted, and
everything lands in one commit.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from gitcert import approval, budget, bundles, gitops, manifests, pki, policies, state
from gitcert.errors import (
    ConfigError,
    GitcertError,
    IssuanceError,
    ManifestError,
    PermanentIssuanceError,
    Problem,
    SopsError,
    TemporaryIssuanceError,
    UserError,
)
from gitcert.issuers import (
    Issuer,
    IssuerContext,
    KeyPair,
    Revoker,
    SigningRequest,
    certificate_problems,
    registry,
    resource_namespace,
)
from gitcert.model import CertificateSpec, Config, DesiredState, FileSource, ObjectKey
from gitcert.policies import Action, Decision
from gitcert.sops import Sops, encryption_problem, looks_plaintext
from gitcert.state import Actual, Status

log = logging.getLogger(__name__)


# --- planning --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedChange:
    spec: CertificateSpec
    actual: Actual
    decision: Decision
    level: int
    depends_on: tuple[ObjectKey, ...] = ()
    """The Certificates whose Secrets this one's issuer reads (its CA)."""

    @property
    def key(self) -> ObjectKey:
        return self.spec.key


@dataclass(frozen=True)
class Plan:
    commit: str | None
    desired: DesiredState
    changes: tuple[PlannedChange, ...]
    now: datetime
    bundle_changes: tuple[bundles.BundleChange, ...] = ()
    bundle_errors: tuple[str, ...] = ()
    budget: tuple[budget.Finding, ...] = ()
    """ACME rate limits this plan's new orders would exceed."""

    @property
    def config(self) -> Config:
        return self.desired.config

    @property
    def pending(self) -> list[PlannedChange]:
        return [c for c in self.changes if c.decision.action.writes]

    @property
    def has_changes(self) -> bool:
        return bool(self.pending or self.bundle_changes)


@dataclass(frozen=True)
class Graph:
    """Which Certificates must be issued before which: levels, and each one's CAs."""

    levels: Mapping[ObjectKey, int]
    depends_on: Mapping[ObjectKey, tuple[ObjectKey, ...]]


def validate(tree: FileSource) -> tuple[DesiredState, Graph]:
    """Load manifests and check the relations that need the issuers' plugins.

    Returns the desired state and the dependency graph of its Certificates.

    Raises:
        ConfigError, ManifestError: with file, line and field.
    """
    desired = manifests.load(tree, registry().keys())
    graph, problems = _dependency_graph(tree, desired)
    problems += _issuer_problems(tree, desired)
    problems += _policy_problems(tree, desired)
    if problems:
        raise ManifestError(problems)
    return desired, graph


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based): a stable subset of the Certificates.

    A Certificate belongs to the shard picked by a hash of its namespace and name, so a
    matrix of jobs splits the work the same way on every run.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise UserError(f"shard {self.index}/{self.count}: expected K/N with 1 <= K <= N")

    def holds(self, key: ObjectKey) -> bool:
        digest = hashlib.sha256(f"{key.namespace}/{key.name}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, sep, count = text.partition("/")
        if not sep or not index.isdigit() or not count.isdigit():
            raise UserError(f"--shard {text!r}: expected K/N, e.g. 2/4")
        return cls(int(index), int(count))


def make_plan(tree: gitops.Tree, now: datetime, shard: Shard | None = None) -> Plan:
    desired, graph = validate(tree)
    snapshot = state.gather(tree, desired)

    # CAs before the leaves they sign: a leaf's decision may depend on its CA's.
    ordered = sorted(desired.certificates, key=lambda c: (graph.levels[c.key], c.key))
    changes: dict[ObjectKey, PlannedChange] = {}
    for spec in ordered:
        issuer = desired.issuers[_issuer_key(spec)]
        decision = policies.decide(policies.Input(spec, snapshot[spec.key], now, issuer))
        cas = graph.depends_on[spec.key]
        decision = _after_issuer_rotation(spec, decision, [changes[k] for k in cas], snapshot)
        changes[spec.key] = PlannedChange(
            spec, snapshot[spec.key], decision, graph.levels[spec.key], cas
        )
        if decision.action.writes:
            log.info("%s: %s (%s) %s", spec.key, decision.action, decision.reason, decision.message)

    coming = {
        c.spec.secret_name
        for c in changes.values()
        if c.decision.action.issues
        and c.spec.namespace == desired.config.cluster_resource_namespace
    }
    # Bundles read every CA, so one shard, the first, builds them.
    with_bundles = shard is None or shard.index == 1
    bundle_changes, bundle_errors = (
        _plan_bundles(desired, tree, now, coming) if with_bundles else ([], [])
    )
    # Counted over every shard's orders: the CA's limits do not know about shards.
    findings = _acme_budget(desired, changes.values(), now)
    if shard is not None:
        changes = _shard(changes, shard)
    return Plan(
        tree.commit_id,
        desired,
        tuple(changes.values()),
        now,
        tuple(bundle_changes),
        tuple(bundle_errors),
        tuple(findings),
    )


def _acme_budget(
    desired: DesiredState, changes: Iterable[PlannedChange], now: datetime
) -> list[budget.Finding]:
    """Count the orders this plan would send to ACME issuers against their rate limits."""
    acme = [c for c in changes if desired.issuers[_issuer_key(c.spec)].type == "acme"]
    if not acme:
        return []
    planned = [(c.spec, c.actual) for c in acme if c.decision.action.issues]
    findings = budget.check(
        planned, [(c.spec, c.actual) for c in acme], desired.config.acme_limits, now
    )
    for finding in findings:
        log.info("%s", finding.message)  # the plan itself reports it to the user
    return findings


def _shard(changes: dict[ObjectKey, PlannedChange], shard: Shard) -> dict[ObjectKey, PlannedChange]:
    """This shard's Certificates; one whose CA another shard reissues now waits a run."""
    kept = {}
    for key, change in changes.items():
        if not shard.holds(key):
            continue
        elsewhere = [
            ca for ca in change.depends_on
            if not shard.holds(ca) and changes[ca].decision.action.issues
        ]  # fmt: skip
        if elsewhere and change.decision.action.issues:
            d = change.decision
            message = f"{d.message}; its CA {elsewhere[0]} is issued by another shard this run"
            change = replace(
                change, decision=Decision(Action.WAIT, d.reason, message, d.renewal_time)
            )
        kept[key] = change
    return kept


def _after_issuer_rotation(
    spec: CertificateSpec,
    decision: Decision,
    cas: Sequence[PlannedChange],
    snapshot: Mapping[ObjectKey, Actual],
) -> Decision:
    """Reissue a certificate whose CA gets (or got) a new key; else keep ``decision``."""
    if decision.action.issues or decision.action is Action.WAIT:
        return decision
    leaf = snapshot[spec.key].secret
    for ca in cas:
        fired = policies.issuer_rotated(
            leaf.certificate if leaf else None, ca.spec, ca.actual, ca.decision
        )
        if fired is not None:
            return Decision(Action.REISSUE, fired[0], fired[1], decision.renewal_time)
    return decision


def bundle_errors(desired: DesiredState, tree: FileSource, now: datetime) -> list[str]:
    """Every Bundle source problem in the repo as it is (for validate).

    A Secret that a Certificate writes is not missing, only not issued yet.
    """
    trust = desired.config.cluster_resource_namespace
    coming = {c.secret_name for c in desired.certificates if c.namespace == trust}
    return _plan_bundles(desired, tree, now, coming)[1]


def _plan_bundles(
    desired: DesiredState, tree: FileSource, now: datetime, coming: set[str]
) -> tuple[list[bundles.BundleChange], list[str]]:
    """What each Bundle's targets would become from what the repo holds now.

    A CA reissued by this plan reaches its bundles at apply time, which rebuilds them
    after issuing.
    """
    found: list[bundles.BundleChange] = []
    errors: list[str] = []
    expected: set[str] = set()
    failed: set[str] = set()
    for bundle in desired.bundles:
        try:
            built = bundles.build(bundle, desired, tree.read, now, coming)
        except bundles.SourceError as exc:
            errors.append(str(exc))
            failed.add(bundle.name)
            continue
        if not built.certificates:
            failed.add(bundle.name)  # all it holds is issued by this run: nothing to show yet
            continue
        files = bundles.render(bundle, built, desired)
        expected |= set(files)
        found += bundles.changes(bundle, built, files, tree.read)
    targets = [path for path, _ in tree.walk(desired.config.bundles_path)]
    found += bundles.stale(targets, tree.read, expected, failed)
    return found, errors


def _dependency_graph(tree: FileSource, desired: DesiredState) -> tuple[Graph, list[Problem]]:
    """Each Certificate's depth in the graph "issued by an issuer that reads a Secret of".

    A CA issuer reads its CA Secret; the Certificate writing that Secret must be issued
    first. A cycle (a CA that signs itself through its own issuer) is an error.
    """
    config, plugins = desired.config, registry()
    writers = {(c.namespace, c.secret_name): c for c in desired.certificates}
    problems: list[Problem] = []
    issuer_deps: dict[ObjectKey, list[CertificateSpec]] = {}

    for key, issuer in desired.issuers.items():
        issuer_deps[key] = []
        namespace = resource_namespace(issuer, config)
        for ns, name in plugins[issuer.type].secret_dependencies(issuer, namespace):
            if (ns, name) in writers:
                issuer_deps[key].append(writers[(ns, name)])
                check = getattr(plugins[issuer.type], "check_writer", None)
                complaint = check(issuer, writers[(ns, name)]) if check else None
                if complaint:
                    field = ("spec", issuer.type, "secretName")
                    line = manifests.locate(tree, issuer.source, field)
                    problems.append(Problem(issuer.source.path, line, ".".join(field), complaint))
            elif tree.blob_id(state.secret_path(config, ns, name)) is None:
                field = ("spec", issuer.type, "secretName")
                problems.append(
                    Problem(
                        issuer.source.path,
                        manifests.locate(tree, issuer.source, field),
                        ".".join(field),
                        f"Secret {ns}/{name} is neither in the repo nor written by any Certificate",
                    )
                )

    edges = {c.key: issuer_deps[_issuer_key(c)] for c in desired.certificates}
    levels: dict[ObjectKey, int] = {}
    cycles: dict[ObjectKey, tuple[CertificateSpec, str]] = {}
    for spec in desired.certificates:
        _visit(spec, edges, levels, [], cycles)
    for spec, message in cycles.values():
        field = ("spec", "issuerRef", "name")
        line = manifests.locate(tree, spec.source, field)
        problems.append(Problem(spec.source.path, line, ".".join(field), message))
    depends_on = {key: tuple(sorted({c.key for c in cas})) for key, cas in edges.items()}
    return Graph(levels, depends_on), problems


def _issuer_problems(tree: FileSource, desired: DesiredState) -> list[Problem]:
    """What each Certificate asks of its issuer that the issuer's plugin says it cannot do."""
    problems = []
    for spec in desired.certificates:
        issuer = desired.issuers[_issuer_key(spec)]
        for found, message in certificate_problems(registry()[issuer.type], issuer, spec):
            problems.append(_located(tree, spec, found, message))
    return problems


def _policy_problems(tree: FileSource, desired: DesiredState) -> list[Problem]:
    """What each Certificate asks that no CertificateRequestPolicy selecting it allows."""
    problems = []
    for spec in desired.certificates:
        for refusal in approval.evaluate(desired.policies, spec, desired.namespaces):
            problems.append(_located(tree, spec, refusal.field, refusal.message))
    return problems


def _located(
    tree: FileSource, spec: CertificateSpec, found: tuple[str | int, ...], message: str
) -> Problem:
    """A problem with a field of a Certificate, at the line and list index the user wrote."""
    path = manifests.item_path(tree, spec.source, found)
    line = manifests.locate(tree, spec.source, path)
    dotted = ".".join(f"[{p}]" if isinstance(p, int) else p for p in path)
    return Problem(spec.source.path, line, dotted.replace(".[", "["), message)


def _issuer_key(spec: CertificateSpec) -> ObjectKey:
    ref = spec.issuer_ref
    namespace = "" if ref.kind == "ClusterIssuer" else spec.namespace
    return ObjectKey(ref.kind, namespace, ref.name)


def _visit(
    spec: CertificateSpec,
    edges: Mapping[ObjectKey, list[CertificateSpec]],
    levels: dict[ObjectKey, int],
    path: list[CertificateSpec],
    cycles: dict[ObjectKey, tuple[CertificateSpec, str]],
) -> bool:
    """Depth-first: set ``levels[spec.key]``; False when ``spec`` sits on or behind a cycle."""
    if spec.key in levels:
        return spec.key not in cycles
    keys = [c.key for c in path]
    if spec.key in keys:
        cycle = [*path[keys.index(spec.key) :], spec]
        chain = " → ".join(
            f"{c.key} (issuer {c.issuer_ref.kind}/{c.issuer_ref.name})" for c in cycle
        )
        for member in cycle[:-1]:
            cycles.setdefault(member.key, (member, f"dependency cycle: {chain}"))
        return False
    healthy = all([_visit(d, edges, levels, [*path, spec], cycles) for d in edges[spec.key]])
    if healthy:
        levels[spec.key] = 1 + max((levels[d.key] for d in edges[spec.key]), default=-1)
    else:
        levels.setdefault(spec.key, 0)
    return healthy


# --- applying --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    change: PlannedChange
    ok: bool
    message: str = ""


@dataclass
class ApplyResult:
    outcomes: list[Outcome] = field(default_factory=list)
    bundle_changes: list[bundles.BundleChange] = field(default_factory=list)
    bundle_failures: list[str] = field(default_factory=list)
    commit: str | None = None

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.bundle_failures


class _Run(IssuerContext):
    """Shared, thread-safe state of one apply: files written so far and keys in memory."""

    def __init__(self, plan: Plan, tree: FileSource, sops: Sops, journal: gitops.Journal) -> None:
        self.config = plan.config
        self.plan = plan
        self.tree = tree
        self.sops = sops
        self.journal = journal
        self.files: dict[str, bytes | None] = {}
        """What this run writes, by path; None deletes."""
        self._fresh: dict[str, pki.PrivateKey] = {}
        self._pairs: dict[str, KeyPair] = {}
        self._lock = threading.Lock()
        self._issuers: dict[ObjectKey, Issuer] = {}
        self.failed: set[ObjectKey] = set()

    def fail(self, key: ObjectKey) -> None:
        with self._lock:
            self.failed.add(key)

    def read(self, path: str) -> bytes | None:
        with self._lock:
            if path in self.files:
                return self.files[path]
        return self.tree.read(path)

    def delete(self, path: str) -> None:
        with self._lock:
            self.files[path] = None

    def write(self, path: str, data: bytes, key: pki.PrivateKey | None = None) -> None:
        with self._lock:
            self.files[path] = data
            self._pairs.pop(path, None)
            if key is not None:
                self._fresh[path] = key

    def keypair(self, namespace: str, secret_name: str) -> KeyPair:
        path = state.secret_path(self.config, namespace, secret_name)
        with self._lock:
            cached = self._pairs.get(path)
            fresh = self._fresh.get(path)
        if cached is not None:
            return cached

        data = self.read(path)
        if data is None:
            raise TemporaryIssuanceError(f"Secret {namespace}/{secret_name} does not exist yet")
        document = state.load(data)
        values = state.secret_values(document)
        chain = tuple(pki.load_pem_chain(values.get("tls.crt", "")))
        if not chain:
            raise TemporaryIssuanceError(f"Secret {namespace}/{secret_name} has no certificate")
        key = fresh if fresh is not None else self.decrypt_key(path, data, document)
        if pki.public_bytes(key.public_key()) != pki.public_bytes(chain[0].public_key()):
            raise TemporaryIssuanceError(
                f"{policies.KEY_PAIR_INVALID}: tls.key of Secret {namespace}/{secret_name} "
                "does not match its tls.crt"
            )
        anchors = pki.load_pem_chain(values.get("ca.crt", ""))
        pair = KeyPair(chain=chain, key=key, ca=anchors[0] if anchors else None)
        with self._lock:
            self._pairs[path] = pair
        return pair

    def decrypt_key(self, path: str, data: bytes, document: Mapping[str, Any]) -> pki.PrivateKey:
        pem = self._decrypt(path, data, document, "tls.key")
        try:
            return pki.load_key(pem)
        except ValueError as exc:
            raise TemporaryIssuanceError(
                f"{policies.KEY_PAIR_INVALID}: tls.key of {path} does not parse"
            ) from exc

    def _decrypt(self, path: str, data: bytes, document: Mapping[str, Any], key: str) -> bytes:
        """One value of a Secret file: decrypted by sops; ``data`` values base64-decoded."""
        section = "stringData" if key in (document.get("stringData") or {}) else "data"
        value = self.sops.decrypt_value(data, path, [section, key])
        return base64.b64decode(value) if section == "data" else value

    def private_key(self, namespace: str, secret_name: str) -> pki.PrivateKey | None:
        path = state.secret_path(self.config, namespace, secret_name)
        data = self.read(path)
        if data is None:
            return None
        return self.decrypt_key(path, data, state.load(data))

    def secret_value(self, namespace: str, secret_name: str, key: str) -> bytes:
        path = state.secret_path(self.config, namespace, secret_name)
        data = self.read(path)
        # A Secret an issuer refers to is the user's set-up, like the age key: when it is
        # missing, the run stops (ConfigError) instead of backing every certificate off.
        if data is None:
            raise ConfigError(f"Secret {namespace}/{secret_name} does not exist ({path})")
        document = state.load(data)
        if key not in state.secret_values(document):
            raise ConfigError(f"Secret {namespace}/{secret_name} has no key {key!r} ({path})")
        return self._decrypt(path, data, document, key)

    def store_private_key(
        self, namespace: str, secret_name: str, key: pki.PrivateKey, annotations: Mapping[str, str]
    ) -> None:
        path = state.secret_path(self.config, namespace, secret_name)
        pem = pki.key_to_pem(key, "PKCS8").decode()
        document = state.secret_document(secret_name, namespace, {}, annotations, "Opaque", {})
        self.write(path, seal(self.sops, path, document, {"tls.key": pem}), key)

    def _journal_path(self, name: str) -> str:
        return f"{name}.yaml"

    def journal_load(self, name: str) -> tuple[Mapping[str, str], pki.PrivateKey] | None:
        data = self.journal.read(self._journal_path(name))
        if data is None:
            return None
        document = state.load(data)
        facts = dict((document.get("metadata") or {}).get("annotations") or {})
        # sops matches creation rules by path; journal entries borrow one under secrets/.
        rules_path = f"{self.config.secrets_path}/.journal/{self._journal_path(name)}"
        return facts, self.decrypt_key(rules_path, data, document)

    def journal_save(self, name: str, facts: Mapping[str, str], key: pki.PrivateKey) -> None:
        rules_path = f"{self.config.secrets_path}/.journal/{self._journal_path(name)}"
        pem = pki.key_to_pem(key, "PKCS8").decode()
        document = state.secret_document(name.rsplit("/", 1)[-1], "", {}, facts, "Opaque", {})
        sealed = seal(self.sops, rules_path, document, {"tls.key": pem})
        self.journal.write({self._journal_path(name): sealed}, f"gitcert: journal {name}\n")

    def issuer(self, spec: CertificateSpec) -> Issuer:
        key = _issuer_key(spec)
        with self._lock:
            if key not in self._issuers:
                issuer_spec = self.plan.desired.issuers[key]
                self._issuers[key] = registry()[issuer_spec.type](issuer_spec, self)
            return self._issuers[key]


def apply(
    plan: Plan,
    repo: gitops.Repository,
    target: gitops.Target,
    progress: Callable[[Outcome], None] = lambda _: None,
) -> ApplyResult:
    """Carry out ``plan`` (made on ``target.tree``) and commit the result on the branch.

    Raises:
        SopsError: a file under the secret paths is not encrypted; nothing is committed.
        GitError: the branch moved or the work tree is in the way; nothing is committed.
    """
    result = ApplyResult()
    if not plan.has_changes:
        log.info("nothing to do")
        return result
    if plan.budget and plan.config.acme_limits.fail:
        # acmeLimits.onExceed: fail holds on merge too: no order is placed.
        raise UserError("; ".join(f.message for f in plan.budget) + " (acmeLimits.onExceed: fail)")

    journal = gitops.Journal(repo)
    with Sops(target.tree.read(".sops.yaml")) as sops:
        run = _Run(plan, target.tree, sops, journal)
        by_level: dict[int, list[PlannedChange]] = defaultdict(list)
        for change in plan.pending:
            by_level[change.level].append(change)

        workers = max(1, plan.config.concurrency)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gitcert") as pool:
            for level in sorted(by_level):
                for outcome in pool.map(lambda c: _execute(run, c), by_level[level]):
                    result.outcomes.append(outcome)
                    progress(outcome)

        # After issuing, so a CA reissued in this run reaches its bundles in this commit.
        _apply_bundles(run, result)

    if not run.files:
        return result
    _refuse_plaintext(target.tree, run.files, plan.config)
    message = commit_message(result.outcomes, result.bundle_changes)
    result.commit = gitops.commit_changes(
        repo,
        target,
        dict(run.files),
        message,
        (plan.config.git.author_name, plan.config.git.author_email),
    )

    _settle_journal(journal, run, result)
    return result


def _settle_journal(journal: gitops.Journal, run: _Run, result: ApplyResult) -> None:
    """Drop journal entries made moot by the commit: issued certificates, and account keys
    whose Secret is now in the branch."""
    done: dict[str, bytes | None] = {f"{o.change.key}.yaml": None for o in result.outcomes if o.ok}
    for path in journal.paths():
        kind, _, rest = path.partition("/")
        namespace, _, name = rest.removesuffix(".yaml").partition("/")
        if kind == "account" and state.secret_path(run.config, namespace, name) in run.files:
            done[path] = None
    journal.write(done, f"gitcert: settled after {result.commit}\n")


def _apply_bundles(run: _Run, result: ApplyResult) -> None:
    """Rebuild every Bundle from the repo as this run leaves it; write what changed, and
    delete the targets no Bundle wants any more."""
    desired = run.plan.desired
    expected: set[str] = set()
    failed: set[str] = set()
    for bundle in desired.bundles:
        try:
            built = bundles.build(bundle, desired, run.read, run.plan.now)
        except bundles.SourceError as exc:
            log.error("%s", exc)
            result.bundle_failures.append(str(exc))
            failed.add(bundle.name)
            continue
        for note in built.notes:
            log.warning("%s", note)

        files = bundles.render(bundle, built, desired)
        expected |= set(files)
        for change in bundles.changes(bundle, built, files, run.read):
            run.write(change.path, files[change.path])
            result.bundle_changes.append(change)
        status = bundles.render_status(bundle.name, built.status)
        path = bundles.status_path(desired.config, bundle.name)
        if run.read(path) != status:
            run.write(path, status)

    targets = [p for p, _ in run.tree.walk(desired.config.bundles_path)]
    for change in bundles.stale(targets, run.read, expected, failed):
        run.delete(change.path)
        result.bundle_changes.append(change)
    names = {b.name for b in desired.bundles}
    for path, _ in run.tree.walk(f"{desired.config.status_path}/_bundles"):
        if path.rsplit("/", 1)[-1].removesuffix(".yaml") not in names:
            run.delete(path)  # the status record of a Bundle that is gone


def _execute(run: _Run, change: PlannedChange) -> Outcome:
    """One Certificate's action, its failure recorded (with backoff) as an outcome.

    Local trouble (sops cannot encrypt or decrypt, a missing .sops.yaml) is not the
    certificate's failure: it propagates and stops the run before anything is committed,
    so fixing the set-up is enough to go on, without waiting out a backoff.
    """
    action, key = change.decision.action, change.key
    failed_ca = next((ca for ca in change.depends_on if ca in run.failed), None)
    if failed_ca is not None and action.issues:
        message = f"skipped: its CA {failed_ca} failed in this run"
        run.fail(key)
        return Outcome(change, ok=False, message=message)

    try:
        if action.issues:
            _issue(run, change)
        elif action is Action.UPDATE_METADATA:
            _update_metadata(run, change)
        else:
            _write_status(run, change, _refreshed_status(change))
    except IssuanceError as exc:
        _record_failure(run, change, str(exc), exc)
        log.error("%s: %s failed: %s", key, action, exc)
        run.fail(key)
        return Outcome(change, ok=False, message=str(exc))
    except ValueError as exc:
        # Verification of a returned certificate raises ValueError; never commit it.
        _record_failure(run, change, f"verification failed: {exc}", None)
        log.error("%s: %s failed verification: %s", key, action, exc)
        run.fail(key)
        return Outcome(change, ok=False, message=f"verification failed: {exc}")
    log.info("%s: %s done (%s)", key, action, change.decision.reason)
    return Outcome(change, ok=True)


def _issue(run: _Run, change: PlannedChange) -> None:
    spec, now = change.spec, run.plan.now
    # Before any key is made or decrypted: a denied request never touches key material.
    _check_approval(run, spec)
    key = _next_key(run, change)
    csr = pki.build_csr(spec.request, key)

    issuer = run.issuer(spec)
    current = _current_certificate(run, spec)
    signed = issuer.sign(SigningRequest(spec, csr, key, now, current))
    key = signed.key or key
    pki.verify_issued(signed.certificate, signed.chain, signed.ca, key, spec.request, now)

    values = {
        "tls.crt": "".join(pki.cert_to_pem(c) for c in (signed.certificate, *signed.chain)),
        "ca.crt": pki.cert_to_pem(signed.ca) if signed.ca is not None else "",
    }
    labels, annotations = state.desired_metadata(spec, state.managed_annotations(spec))
    path = state.secret_path(run.config, spec.namespace, spec.secret_name)
    secret = _encrypt_secret(
        run, spec, path, labels, annotations, values, pki.key_to_pem(key, spec.private_key.encoding)
    )
    run.write(path, secret, key)

    previous = change.actual.status or Status()
    status = state.issued_status(
        spec,
        secret,
        revision=previous.revision + 1,
        reason=change.decision.reason,
        suggested_renewal_time=signed.renewal_time,
        details=signed.details,
    )
    _write_status(run, change, status)


def _check_approval(run: _Run, spec: CertificateSpec) -> None:
    """Sign nothing the CertificateRequestPolicies deny.

    Validation refused such a plan already; this guards a plan built some other way, the
    way approver-policy stands between every request and its signer.

    Raises:
        PermanentIssuanceError: with the same words plan would have printed.
    """
    desired = run.plan.desired
    refusals = approval.evaluate(desired.policies, spec, desired.namespaces)
    if refusals:
        problems = [_located(run.tree, spec, r.field, r.message) for r in refusals]
        raise PermanentIssuanceError("; ".join(str(p) for p in problems))


def _current_certificate(run: _Run, spec: CertificateSpec) -> x509.Certificate | None:
    data = run.read(state.secret_path(run.config, spec.namespace, spec.secret_name))
    if data is None:
        return None
    try:
        chain = pki.load_pem_chain(state.secret_values(state.load(data)).get("tls.crt", ""))
    except ValueError:
        return None
    return chain[0] if chain else None


_COMPROMISES = {"keyCompromise", "cACompromise", "aACompromise"}


def _next_key(run: _Run, change: PlannedChange) -> pki.PrivateKey:
    """A new key, unless rotationPolicy Never and the current key is still right.

    A key whose certificate was revoked for a compromise is never used again, whatever
    the rotation policy says.
    """
    spec, actual = change.spec, change.actual
    status = actual.status
    compromised = status is not None and status.revocation_reason in _COMPROMISES
    if compromised:
        log.info("%s: the key was revoked as compromised; generating a new key", change.key)
    reuse = spec.private_key.rotation_policy == "Never" and actual.secret is not None
    reuse = reuse and not compromised
    if not reuse or not actual.secret or not actual.secret.key_encrypted:
        return pki.generate_key(spec.private_key)

    try:
        pair = run.keypair(spec.namespace, spec.secret_name)
    except TemporaryIssuanceError as exc:
        log.info("%s: %s; generating a new key", change.key, exc)
        return pki.generate_key(spec.private_key)
    if not pki.key_matches_spec(pair.key.public_key(), spec.private_key):
        log.info("%s: %s; generating a new key", change.key, policies.KEY_SPEC_CHANGED)
        return pki.generate_key(spec.private_key)
    return pair.key


def _encrypt_secret(
    run: _Run,
    spec: CertificateSpec,
    path: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    values: Mapping[str, str],
    key_pem: bytes,
) -> bytes:
    """The Secret of a newly issued certificate, its key encrypted (see :func:`seal`)."""
    document = state.secret_document(
        spec.secret_name, spec.namespace, labels, annotations, "kubernetes.io/tls", {}
    )
    public = {"ca.crt": values.get("ca.crt", ""), "tls.crt": values.get("tls.crt", "")}
    return seal(run.sops, path, document, {**public, "tls.key": key_pem.decode()})


def seal(sops: Sops, path: str, document: Mapping[str, Any], values: Mapping[str, str]) -> bytes:
    """Encrypt a Secret's values with sops, then render the canonical file around them.

    sops formats YAML its own way; re-rendering the clear parts ourselves keeps every
    Secret in one format, so a later metadata repair changes only the lines it must.
    That is sound only because the creation rule sets mac_only_encrypted (the MAC then
    covers the encrypted values alone) and leaves tls.crt and ca.crt readable.
    """
    plain = state.render_document({**document, "stringData": dict(values)}, None)
    encrypted = state.load(sops.encrypt(plain, path))
    problem = encryption_problem(encrypted)
    if problem:
        raise SopsError(f"{path}: {problem}; check its creation rule in .sops.yaml")

    sops_metadata = encrypted["sops"]
    sealed = encrypted.get("stringData") or {}
    if any(str(sealed.get(k, "")).startswith("ENC[") for k in ("tls.crt", "ca.crt")):
        raise SopsError(
            f"the .sops.yaml rule for {path} encrypts tls.crt/ca.crt; gitcert needs them readable: "
            r"use unencrypted_regex: ^(apiVersion|kind|metadata|type|tls\.crt|ca\.crt)$"
        )
    if not sops_metadata.get("mac_only_encrypted"):
        raise SopsError(f"the .sops.yaml rule for {path} must set mac_only_encrypted: true")
    return state.render_document({**document, "stringData": dict(sealed)}, sops_metadata)


def _update_metadata(run: _Run, change: PlannedChange) -> None:
    spec = change.spec
    path = state.secret_path(run.config, spec.namespace, spec.secret_name)
    document = state.load(run.read(path) or b"")
    if not (document.get("sops") or {}).get("mac_only_encrypted"):
        raise SopsError(
            f"{path} was encrypted without mac_only_encrypted; "
            "its metadata cannot be edited in place"
        )

    labels, annotations = state.desired_metadata(spec, state.managed_annotations(spec))
    secret = state.render_secret(
        spec, labels, annotations, state.secret_values(document), document["sops"]
    )
    run.write(path, secret)
    status = replace(
        _refreshed_status(change),
        secret_blob=state.blob_id(secret),
        secret_facts=state.secret_facts(secret),
    )
    _write_status(run, change, status)


def _refreshed_status(change: PlannedChange) -> Status:
    """The status record brought up to date with the Secret as it is (no issuance)."""
    spec, actual = change.spec, change.actual
    status = actual.status or Status(
        request=spec.request,
        private_key=replace(spec.private_key, rotation_policy="Always"),
        issuer=state.issuer_record(spec),
    )
    cert = actual.secret.certificate if actual.secret else None
    if cert is None:
        return status
    return replace(
        status,
        not_before=cert.not_before,
        not_after=cert.not_after,
        serial_number=cert.serial_number,
        renewal_time=change.decision.renewal_time,
        secret_blob=actual.secret_blob or "",
        secret_facts=actual.secret,
    )


def _record_failure(run: _Run, change: PlannedChange, message: str, exc: Exception | None) -> None:
    now = run.plan.now
    previous = change.actual.status or Status()
    attempts = (
        previous.failed_attempts + 1
        if previous.failed_spec_digest == _failure_digest(run.plan, change)
        else 1
    )
    retry = now + policies.backoff_delay(attempts)
    if isinstance(exc, TemporaryIssuanceError) and exc.retry_after is not None:
        retry = max(retry, now + timedelta(seconds=exc.retry_after))
    status = replace(
        previous,
        failed_attempts=attempts,
        last_failure_time=now,
        last_failure_reason=change.decision.reason,
        last_failure_message=message,
        failed_spec_digest=_failure_digest(run.plan, change),
        retry_after=retry,
    )
    _write_status(run, change, status)


def _failure_digest(plan: Plan, change: PlannedChange) -> str:
    return state.spec_digest(change.spec, plan.desired.issuers[_issuer_key(change.spec)])


def _write_status(run: _Run, change: PlannedChange, status: Status) -> None:
    path = state.status_path(run.config, change.spec.namespace, change.spec.name)
    data = state.render_status(change.key, status)
    if run.tree.read(path) != data:
        run.write(path, data)


def _refuse_plaintext(tree: FileSource, files: Mapping[str, bytes | None], config: Config) -> None:
    """The last gate before a commit: every file under the secret paths is encrypted.

    Files written in this run are parsed and checked fully; the rest get a byte-level scan
    (a readable key or a missing sops block), which is cheap enough for every file.
    """
    prefix = config.secrets_path + "/"
    offenders = []
    for path, data in sorted(files.items()):
        if data is not None and path.startswith(prefix):
            problem = encryption_problem(state.load(data)) or (
                "holds a readable key" if looks_plaintext(data) else None
            )
            if problem:
                offenders.append(f"{path} {problem}")
    for path, _ in tree.walk(config.secrets_path):
        if path in files:
            continue
        data = tree.read(path) or b""
        if looks_plaintext(data) or b"\nsops:" not in data:
            offenders.append(f"{path} is not SOPS-encrypted")
    if offenders:
        raise SopsError("refusing to commit: " + "; ".join(offenders))


def commit_message(
    outcomes: Iterable[Outcome], bundle_changes: Sequence[bundles.BundleChange] = ()
) -> str:
    outcomes = list(outcomes)
    counts: dict[str, int] = defaultdict(int)
    for outcome in outcomes:
        counts[str(outcome.change.decision.action) if outcome.ok else "failed"] += 1
    for change in bundle_changes:
        counts[change.action] += 1
    summary = ", ".join(f"{action} {n}" for action, n in sorted(counts.items()))
    lines = [f"gitcert: {summary}", ""]
    for outcome in outcomes:
        decision = outcome.change.decision
        verb = str(decision.action) if outcome.ok else f"failed {decision.action}"
        line = f"- {verb} {outcome.change.key}: {decision.reason}"
        if not outcome.ok:
            line += f" ({outcome.message})"
        lines.append(line)
    for change in bundle_changes:
        lines.append(f"- {change.action} Bundle/{change.bundle} {change.path}: {change.message}")
    return "\n".join(lines) + "\n"


# --- revocation -------------------------------------------------------------------------------

# RFC 5280 section 5.3.1 reason codes, by the names people use for them.
REVOCATION_REASONS = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "certificateHold": 6,
    "privilegeWithdrawn": 9,
    "aACompromise": 10,
}


def find(plan: Plan, name: str, namespace: str | None) -> PlannedChange:
    """The one Certificate called ``name`` (in ``namespace``, when given)."""
    found = [
        c
        for c in plan.changes
        if c.key.name == name and (namespace is None or c.key.namespace == namespace)
    ]
    if not found:
        where = f" in namespace {namespace}" if namespace else ""
        raise UserError(f"no Certificate named {name!r}{where}")
    if len(found) > 1:
        spaces = ", ".join(c.key.namespace for c in found)
        raise UserError(f"Certificate {name!r} exists in several namespaces ({spaces}); pass -n")
    return found[0]


# cert-manager's reason when a person asks for a renewal (``cmctl renew``).
MANUALLY_TRIGGERED = "ManuallyTriggered"


def request_renewal(plan: Plan, name: str) -> Plan:
    """``plan`` with Certificate ``name`` (or ``namespace/name``) renewed now.

    An action that already issues keeps its own, more telling reason. Leaves signed by a
    CA renewed this way follow on the next run (reason IssuerRotated), not in this one.
    """
    namespace, _, bare = name.rpartition("/")
    target = find(plan, bare, namespace or None)
    if target.decision.action.issues:
        return plan
    message = "a renewal was requested (apply --renew)"
    decision = Decision(Action.RENEW, MANUALLY_TRIGGERED, message, target.decision.renewal_time)
    log.info("%s: renew (%s)", target.key, MANUALLY_TRIGGERED)
    changes = tuple(
        replace(c, decision=decision) if c.key == target.key else c for c in plan.changes
    )
    return replace(plan, changes=changes)


def with_author(plan: Plan, name: str | None, email: str | None) -> Plan:
    """``plan`` committing as ``name <email>`` instead of gitcert.yaml's ``git.author``."""
    git = plan.config.git
    git = replace(git, author_name=name or git.author_name, author_email=email or git.author_email)
    config = replace(plan.config, git=git)
    return replace(plan, desired=replace(plan.desired, config=config))


def revoke(
    plan: Plan, repo: gitops.Repository, target: gitops.Target, change: PlannedChange, reason: str
) -> str:
    """Revoke the current certificate of ``change`` with its issuer; record it and commit.

    The next plan reissues it (reason Revoked).
    """
    with Sops(target.tree.read(".sops.yaml")) as sops:
        run = _Run(plan, target.tree, sops, gitops.Journal(repo))
        current = _current_certificate(run, change.spec)
        if current is None:
            raise UserError(f"{change.key} has no issued certificate to revoke")
        recorded = change.actual.status
        if recorded is not None and recorded.revoked_serial == format(current.serial_number, "x"):
            raise UserError(
                f"{change.key}'s certificate {recorded.revoked_serial} was already revoked "
                f"({recorded.revocation_reason}); apply reissues it"
            )
        issuer = run.issuer(change.spec)
        if not isinstance(issuer, Revoker):
            kind = plan.desired.issuers[_issuer_key(change.spec)].type
            raise UserError(f"the {kind} issuer cannot revoke certificates")
        try:
            issuer.revoke(current, REVOCATION_REASONS[reason])
        except IssuanceError as exc:
            raise GitcertError(f"revoking {change.key} failed: {exc}") from exc

        serial = format(current.serial_number, "x")
        status = replace(
            change.actual.status or Status(),
            revoked_serial=serial,
            revocation_reason=reason,
            revoked_at=plan.now,
        )
        _write_status(run, change, status)
    log.info("%s: revoked serial %s (%s)", change.key, serial, reason)
    message = f"gitcert: revoke {change.key}\n\n- revoke {change.key}: {reason} (serial {serial})\n"
    git = plan.config.git
    return gitops.commit_changes(
        repo, target, dict(run.files), message, (git.author_name, git.author_email)
    )


# --- status -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateState:
    key: ObjectKey
    ready: bool
    reason: str
    message: str
    not_after: datetime | None
    renewal_time: datetime | None
    last_reason: str


def certificate_states(plan: Plan) -> list[CertificateState]:
    rows = []
    for change in sorted(plan.changes, key=lambda c: c.key):
        i = policies.Input(change.spec, change.actual, plan.now)
        fired = policies.ready(i)
        status = change.actual.status
        cert = change.actual.secret.certificate if change.actual.secret else None
        last = ""
        if status is not None and status.last_failure_reason:
            last = f"failed: {status.last_failure_message}"
        elif status is not None:
            last = status.last_issuance_reason
        rows.append(
            CertificateState(
                key=change.key,
                ready=fired is None,
                reason=fired[0] if fired else "Ready",
                message=fired[1] if fired else "",
                not_after=cert.not_after if cert else None,
                renewal_time=change.decision.renewal_time,
                last_reason=last,
            )
        )
    return rows


__all__ = [
    "ApplyResult",
    "GitcertError",
    "Plan",
    "apply",
    "certificate_states",
    "make_plan",
    "validate",
]
