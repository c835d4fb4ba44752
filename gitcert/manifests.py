"""Load and validate the desired state: gitcert.yaml and every manifest under its paths.

Files are read from a git tree (a :class:`~gitcert.model.FileSource`), never from the work
tree, so ``--ref`` sees exactly what was committed. Each document is checked against the
JSON Schema of its kind in ``schemas/``, then against cert-manager's own rules, then
against the other objects (issuers exist and are in reach, no two Certificates share a
Secret). Every problem is collected, located at file, line and field, and raised together
as one :class:`~gitcert.errors.ManifestError`, so a user fixes a whole batch at once.

Speed: documents are parsed with libyaml (PyYAML's C loader). Line numbers of fields are
looked up with ruamel.yaml's round-trip loader only for the documents that have problems.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import fastjsonschema
import yaml
from cryptography import x509
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError as RuamelError

from gitcert import durations, names
from gitcert.clock import parse_instant
from gitcert.errors import ConfigError, ManifestError, Problem, UserError
from gitcert.model import (
    CERT_MANAGER_GROUP,
    DEFAULT_DURATION,
    SUBJECT_FIELDS,
    AcmeLimits,
    AllowedSubject,
    AllowedValues,
    BundleSource,
    BundleSpec,
    BundleTarget,
    CertificateRequestPolicy,
    CertificateSpec,
    Config,
    DesiredState,
    FileSource,
    GitSettings,
    IssuerRef,
    IssuerSpec,
    KeySpec,
    ObjectKey,
    PolicyAllowed,
    PolicyConstraints,
    PolicySelector,
    Request,
    Source,
    Subject,
    TrustStore,
)

if TYPE_CHECKING:
    from jsonschema import ValidationError

log = logging.getLogger(__name__)

CONFIG_PATH = "gitcert.yaml"
CONFIG_API = "gitcert.dev/v1alpha1"
_KINDS = {
    ("cert-manager.io/v1", "Certificate"): "certificate",
    ("cert-manager.io/v1", "Issuer"): "issuer",
    ("cert-manager.io/v1", "ClusterIssuer"): "clusterissuer",
    (CONFIG_API, "Config"): "config",
    ("trust.cert-manager.io/v1alpha1", "Bundle"): "bundle",
    ("v1", "ConfigMap"): "configmap",
    ("policy.cert-manager.io/v1alpha1", "CertificateRequestPolicy"): "certificaterequestpolicy",
}
# Kinds gitcert knows of but does not read yet: named with a clearer error than "unsupported".
_LATER_KINDS: dict[str, str] = {}
_MIN_DURATION = timedelta(hours=1)
_MIN_RENEW_BEFORE = timedelta(minutes=5)
_RSA_SIZES = range(2048, 8193)
_ECDSA_SIZES = (256, 384, 521)
_DOC_SEPARATOR = re.compile(r"^---(?:\s|$)")
_ANY_SEPARATOR = re.compile(r"^---(?:\s|$)", re.MULTILINE)

JSON = Any


# --- schemas -------------------------------------------------------------------------------


def _schema_dir() -> Path:
    # Installed wheels carry the schemas inside the package; a source checkout (editable
    # install) keeps them at the top of the project.
    packaged = importlib.resources.files("gitcert") / "schemas"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "schemas"


@functools.cache
def schema(name: str) -> dict[str, JSON]:
    with open(_schema_dir() / f"{name}.json", encoding="utf-8") as f:
        return cast(dict[str, JSON], json.load(f))


@functools.cache
def _fast_validator(name: str) -> Callable[[JSON], JSON]:
    return cast(Callable[[JSON], JSON], fastjsonschema.compile(schema(name)))


def _schema_problems(name: str, doc: JSON) -> list[tuple[tuple[str | int, ...], str]]:
    """Every schema violation of ``doc`` as (path, message); empty when valid.

    fastjsonschema decides quickly whether there is anything wrong; the slower jsonschema
    then lists every problem with its path, which only happens for bad documents.
    """
    try:
        _fast_validator(name)(doc)
        return []
    except fastjsonschema.JsonSchemaException:
        pass
    import jsonschema  # only bad documents get here; it costs 70 ms to import

    validator = jsonschema.Draft202012Validator(schema(name))
    found = []
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path))):
        found.extend(_explain(error))
    return found


def _explain(error: ValidationError) -> list[tuple[tuple[str | int, ...], str]]:
    path = tuple(error.absolute_path)
    schema_ = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(schema_.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        expected = f"expected one of: {', '.join(known)}" if known else "no fields expected"
        return [((*path, key), f"unknown field ({expected})") for key in extra]
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else error.message
        return [((*path, missing), "required field is missing")]
    if error.validator in ("enum", "const"):
        allowed = schema_.get("enum", [schema_.get("const")])
        return [(path, f"got {error.instance!r}, expected one of: {', '.join(map(str, allowed))}")]
    if error.validator == "type":
        return [(path, f"expected {schema_.get('type')}, got {_type_name(error.instance)}")]
    if error.validator == "maxLength" and isinstance(error.instance, str):
        limit = schema_.get("maxLength")
        return [(path, f"is {len(error.instance)} characters long; at most {limit} are allowed")]
    if error.validator == "pattern":
        hint = schema_.get("patternHint", "is not a valid name (lower-case, digits, '-', '.')")
        return [(path, f"{error.instance!r} {hint}")]
    if error.validator in ("minProperties", "maxProperties") and schema_.get("properties"):
        choices = ", ".join(sorted(schema_["properties"]))
        what = "issuer type" if path[-1:] == ("spec",) else "of"
        return [(path, f"expected exactly one {what}: {choices}")]
    return [(path, str(error.message))]


def _type_name(value: object) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


# --- documents ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """One YAML document of one file, with the text it came from for line look-ups."""

    path: str
    line: int
    text: str
    body: JSON

    def locate(self, field: Sequence[str | int]) -> int:
        """Line of the deepest part of ``field`` that exists in this document."""
        return self.line_offset + _locate(self.text, field)

    @property
    def line_offset(self) -> int:
        return self.line - _first_content_line(self.text)

    def problem(self, field: Sequence[str | int], message: str) -> Problem:
        return Problem(self.path, self.locate(field), _dotted(field), message)


def _dotted(field: Sequence[str | int]) -> str | None:
    out = ""
    for part in field:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def _first_content_line(text: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "%")) and not _DOC_SEPARATOR.match(line):
            return number
    return 1


def _locate(text: str, field: Sequence[str | int]) -> int:
    try:
        node = YAML().load(text)
    except RuamelError:
        return _first_content_line(text)
    line = _first_content_line(text)
    for part in field:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
        else:
            break
        node = node[part]
    return line


class _StrictLoader(yaml.CSafeLoader):
    """libyaml's loader, refusing duplicate keys.

    YAML parsers keep the last of two equal keys; Kubernetes' strict decoding refuses them.
    A second ``dnsNames:`` silently replacing the first is exactly the kind of loss a
    reviewer misses, so it is an error here.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Compare the keys' source text: constructing them twice would cost a third of the
        # load. Manifest keys are plain scalars; anything fancier is not checked.
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def split_documents(path: str, data: bytes) -> tuple[list[Document], list[Problem]]:
    """Decode and parse every YAML document in one file; never raises on bad input."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = data[: exc.start].count(b"\n") + 1
        byte = data[exc.start : exc.start + 1].hex()
        message = f"not UTF-8 (byte 0x{byte}); save the file as UTF-8"
        return [], [Problem(path, bad_line, None, message)]

    documents, problems = [], []
    for start, chunk in _chunks(text):
        try:
            body = yaml.load(chunk, Loader=_StrictLoader)
        except yaml.YAMLError as exc:
            problems.append(Problem(path, _error_line(exc, chunk, start), None, _reason(exc)))
            continue
        except _CONSTRUCTOR_ERRORS as exc:
            # PyYAML's constructors raise plain errors for values such as 2026-13-01.
            where = start + _bad_value_line(chunk)
            problems.append(Problem(path, where, None, f"invalid YAML value: {exc}"))
            continue
        if body is None:
            continue
        first = start - 1 + _first_content_line(chunk)
        documents.append(Document(path, first, chunk, body))
    return documents, problems


_CONSTRUCTOR_ERRORS = (ValueError, TypeError, IndexError, AttributeError, OverflowError)


def _bad_value_line(chunk: str) -> int:
    """0-based line of the first scalar in ``chunk`` whose value cannot be constructed."""
    loader = yaml.SafeLoader("")
    stack = [yaml.compose(chunk, Loader=yaml.CSafeLoader)]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.ScalarNode):
            try:
                loader.construct_object(node)
            except (*_CONSTRUCTOR_ERRORS, yaml.YAMLError):
                return int(node.start_mark.line)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in reversed(node.value) for n in reversed(pair))
    return 0


def _chunks(text: str) -> list[tuple[int, str]]:
    """Split a stream at ``---`` lines: (first line number, text) of each document.

    Lines are split at ``\n`` only; ``str.splitlines`` would also split at characters such
    as form feeds, which YAML does not treat as line breaks, and shift every line number.
    Directives (``%YAML 1.1``) stay with the document they introduce.
    """
    if not _ANY_SEPARATOR.search(text):
        return [(1, text)]  # the common case: one document, no separator at all
    chunks: list[tuple[int, list[str]]] = [(1, [])]
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        ending = "\n" if number < len(lines) else ""
        if _DOC_SEPARATOR.match(line) and not _only_directives(chunks[-1][1]):
            chunks.append((number, []))
        chunks[-1][1].append(line + ending)
    return [(start, "".join(body)) for start, body in chunks]


def _only_directives(lines: list[str]) -> bool:
    content = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return bool(content) and all(ln.startswith("%") for ln in content)


def _error_line(exc: yaml.YAMLError, chunk: str, start: int) -> int:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return start + int(mark.line)
    position = getattr(exc, "position", None)  # ReaderError: a bad character
    if isinstance(position, int):
        return start + chunk[:position].count("\n")
    return start


def _reason(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        character = chr(exc.character) if isinstance(exc.character, int) else exc.character
        return f"invalid YAML: character {character!r} is not allowed"
    return f"invalid YAML: {getattr(exc, 'problem', None) or exc}"


def locate(tree: FileSource, source: Source, field: Sequence[str | int]) -> int:
    """The line of ``field`` in the object written at ``source``; for errors found later.

    Re-reads and re-parses that one file, so it costs nothing unless a problem is reported.
    """
    documents, _ = split_documents(source.path, tree.read(source.path) or b"")
    for document in documents:
        if document.line == source.line:
            return document.locate(field)
    return source.line


_NORMALISERS: dict[str, Callable[[str], str]] = {
    "dnsNames": names.dns_name,
    "ipAddresses": names.ip_address,
    "uris": names.uri,
    "emailAddresses": names.email,
}


def item_path(
    tree: FileSource, source: Source, path: tuple[str | int, ...]
) -> tuple[str | int, ...]:
    """Turn ``("spec", "dnsNames", "a.example.test")`` into the index the user wrote it at.

    Specs hold names normalised and sorted, so a name's position there is not its
    position in the manifest; errors must point at the line the user wrote.
    """
    if len(path) != 3 or path[1] not in _NORMALISERS or not isinstance(path[2], str):
        return path
    normalise = _NORMALISERS[str(path[1])]
    documents, _ = split_documents(source.path, tree.read(source.path) or b"")
    for document in documents:
        if document.line != source.line:
            continue
        for index, value in enumerate(document.body["spec"].get(path[1], [])):
            try:
                if normalise(value) == path[2]:
                    return (path[0], path[1], index)
            except ValueError:
                continue
    return path[:2]


# --- the whole desired state -----------------------------------------------------------------


def load_config(tree: FileSource) -> Config:
    """Read gitcert.yaml; a repository without one is not a cert repo."""
    data = tree.read(CONFIG_PATH)
    if data is None:
        raise ConfigError(
            f"no {CONFIG_PATH} at the top of the repository at this ref; "
            "is this a cert repo? (`gitcert init DIR` makes one)"
        )
    documents, problems = split_documents(CONFIG_PATH, data)
    if problems:
        raise ManifestError(problems)
    if len(documents) != 1:
        raise ManifestError([Problem(CONFIG_PATH, 1, None, "expected exactly one document")])

    document = documents[0]
    kind_problems = _check_kind(document)
    if kind_problems:
        raise ManifestError(kind_problems)
    found = _schema_problems("config", document.body)
    if found:
        raise ManifestError([document.problem(f, m) for f, m in found])
    problems = [
        document.problem(("spec", field), f"{value!r} must be a relative path inside the repo")
        for field, value in _paths(document.body.get("spec") or {})
        if value.startswith("/") or ".." in value.split("/")
    ]
    if problems:
        raise ManifestError(problems)
    return _config(document)


def _paths(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    found = [(k, str(spec[k])) for k in ("secretsPath", "statusPath", "bundlesPath") if k in spec]
    return found + [("manifests", str(p)) for p in spec.get("manifests", [])]


def _config(document: Document) -> Config:
    spec = document.body.get("spec") or {}
    git = spec.get("git") or {}
    author = git.get("author") or {}
    defaults, default_git = Config(), GitSettings()
    return Config(
        manifest_paths=tuple(p.strip("/") for p in spec.get("manifests", defaults.manifest_paths)),
        secrets_path=spec.get("secretsPath", defaults.secrets_path).strip("/"),
        status_path=spec.get("statusPath", defaults.status_path).strip("/"),
        cluster_resource_namespace=spec.get(
            "clusterResourceNamespace", defaults.cluster_resource_namespace
        ),
        concurrency=spec.get("concurrency", defaults.concurrency),
        bundles_path=spec.get("bundlesPath", defaults.bundles_path).strip("/"),
        acme_limits=_acme_limits(spec.get("acmeLimits") or {}),
        namespaces={
            name: dict((body or {}).get("labels") or {})
            for name, body in (spec.get("namespaces") or {}).items()
        },
        git=GitSettings(
            remote=git.get("remote", default_git.remote),
            branch=git.get("branch", default_git.branch),
            author_name=author.get("name", default_git.author_name),
            author_email=author.get("email", default_git.author_email),
        ),
        source=Source(document.path, document.line),
    )


def _acme_limits(spec: Mapping[str, Any]) -> AcmeLimits:
    default = AcmeLimits()
    return AcmeLimits(
        certificates_per_registered_domain=spec.get(
            "certificatesPerRegisteredDomain", default.certificates_per_registered_domain
        ),
        duplicate_certificates=spec.get("duplicateCertificates", default.duplicate_certificates),
        window=durations.parse(spec["window"]) if "window" in spec else default.window,
        fail=spec.get("onExceed", "warn") == "fail",
    )


def load(tree: FileSource, issuer_types: Iterable[str]) -> DesiredState:
    """Load, validate and cross-check every manifest in ``tree``.

    Args:
        tree: the files at the ref being planned.
        issuer_types: the ``spec`` keys that have an issuer plugin (``selfSigned``, ``ca``...).

    Raises:
        ConfigError: gitcert.yaml is missing.
        ManifestError: with every problem found, each at its file, line and field.
    """
    config = load_config(tree)
    problems: list[Problem] = []
    found = _Collected()
    supported = set(issuer_types)

    for path in _manifest_files(tree, config):
        documents, file_problems = split_documents(path, tree.read(path) or b"")
        problems += file_problems
        for document in documents:
            problems += _load_document(document, supported, found)

    problems += _cross_check(found.certificates, found.issuers)
    problems += _bundle_targets(found, config)
    if problems:
        raise ManifestError(problems)

    log.debug("loaded %d certificates and %d issuers", len(found.certificates), len(found.issuers))
    certificates = tuple(sorted((c for _, c in found.certificates), key=lambda c: c.key))
    return DesiredState(
        config=config,
        certificates=certificates,
        issuers={key: issuer for key, (_, issuer) in found.issuers.items()},
        bundles=tuple(sorted(found.bundles.values(), key=lambda b: b.name)),
        config_maps=found.config_maps,
        namespaces=_namespaces(config, certificates, found),
        policies=tuple(sorted(found.policies.values(), key=lambda p: p.name)),
    )


@dataclass
class _Collected:
    """Objects found so far, by kind, while documents are loaded."""

    certificates: list[tuple[Document, CertificateSpec]] = field(default_factory=list)
    issuers: dict[ObjectKey, tuple[Document, IssuerSpec]] = field(default_factory=dict)
    bundles: dict[str, BundleSpec] = field(default_factory=dict)
    bundle_documents: dict[str, Document] = field(default_factory=dict)
    config_maps: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    policies: dict[str, CertificateRequestPolicy] = field(default_factory=dict)


def _namespaces(
    config: Config, certificates: Sequence[CertificateSpec], found: _Collected
) -> dict[str, dict[str, str]]:
    """Declared namespaces with their labels, plus every namespace a manifest uses."""
    namespaces = {name: dict(labels) for name, labels in config.namespaces.items()}
    used = {c.namespace for c in certificates} | {k.namespace for k in found.issuers if k.namespace}
    used |= {namespace for namespace, _ in found.config_maps}
    for name in sorted(used):
        namespaces.setdefault(name, {})
    return dict(sorted(namespaces.items()))


def _manifest_files(tree: FileSource, config: Config) -> list[str]:
    files = []
    for prefix in config.manifest_paths:
        files += [p for p, _ in tree.walk(prefix) if p.endswith((".yaml", ".yml"))]
    return sorted(set(files))


def _check_kind(document: Document) -> list[Problem]:
    body = document.body
    if not isinstance(body, dict):
        return [document.problem((), f"expected a mapping (an object), got {_type_name(body)}")]
    api, kind = body.get("apiVersion"), body.get("kind")
    if (api, kind) in _KINDS:
        return []
    if kind in _LATER_KINDS:
        return [document.problem(("kind",), _LATER_KINDS[str(kind)])]
    known = ", ".join(f"{a} {k}" for a, k in _KINDS)
    field = "kind" if kind not in {k for _, k in _KINDS} else "apiVersion"
    message = f"unsupported apiVersion/kind {api} {kind}; known: {known}"
    return [document.problem((field,), message)]


def _load_document(document: Document, supported: set[str], found: _Collected) -> list[Problem]:
    # Flux and kustomize keep a kustomization.yaml beside the manifests it lists; it is
    # theirs, not a gitcert object, so it is passed over rather than refused.
    if isinstance(document.body, dict) and document.body.get("kind") == "Kustomization":
        return []
    problems = _check_kind(document)
    if problems:
        return problems
    name = _KINDS[(document.body["apiVersion"], document.body["kind"])]
    if name == "config":
        return [document.problem(("kind",), f"Config belongs in {CONFIG_PATH}, not in manifests")]

    invalid = _schema_problems(name, document.body)
    if invalid:
        return [document.problem(f, m) for f, m in invalid]

    if name == "certificate":
        spec, problems = _certificate(document)
        if spec is not None:
            found.certificates.append((document, spec))
        return problems
    if name == "bundle":
        found.bundle_documents.setdefault(str(document.body["metadata"]["name"]), document)
        return _bundle(document, found.bundles)
    if name == "certificaterequestpolicy":
        return _policy(document, found.policies)
    if name == "configmap":
        key = (_namespace(document), str(document.body["metadata"]["name"]))
        found.config_maps[key] = dict(document.body.get("data") or {})
        return []

    issuers = found.issuers
    issuer, problems = _issuer(document, supported)
    if issuer is None:
        return problems
    if issuer.key in issuers:
        other = issuers[issuer.key][0]
        return [
            *problems,
            document.problem(
                ("metadata", "name"), f"{issuer.key} is also defined at {other.path}:{other.line}"
            ),
        ]
    issuers[issuer.key] = (document, issuer)
    return problems


def _namespace(document: Document) -> str:
    return str(document.body["metadata"].get("namespace") or "default")


# --- Certificate -----------------------------------------------------------------------------


def _certificate(document: Document) -> tuple[CertificateSpec | None, list[Problem]]:
    body = document.body
    spec: dict[str, JSON] = body["spec"]
    problems: list[Problem] = []

    def bad(field: str, message: str, *rest: str | int) -> None:
        path = tuple(part for part in ("spec", field, *rest) if part != "")
        problems.append(document.problem(path, message))

    request = _request(spec, bad)
    private_key = _key_spec(spec.get("privateKey") or {}, bad)
    renew_before = _duration(spec, "renewBefore", bad)
    percentage = spec.get("renewBeforePercentage")

    if renew_before is not None and percentage is not None:
        bad("renewBefore", "renewBefore and renewBeforePercentage are mutually exclusive")
    if renew_before is not None and renew_before < _MIN_RENEW_BEFORE:
        bad("renewBefore", f"must be at least 5m, got {spec['renewBefore']}")
    elif renew_before is not None and renew_before >= request.duration:
        bad("renewBefore", f"must be less than duration ({durations.format(request.duration)})")
    if percentage is not None and request.duration * (100 - percentage) / 100 < _MIN_RENEW_BEFORE:
        bad("renewBeforePercentage", "leaves less than 5m before expiry for renewal")

    if problems:
        return None, problems

    ref = spec["issuerRef"]
    template = spec.get("secretTemplate") or {}
    return (
        CertificateSpec(
            key=ObjectKey("Certificate", _namespace(document), body["metadata"]["name"]),
            source=Source(document.path, document.line),
            secret_name=spec["secretName"],
            issuer_ref=IssuerRef(
                name=ref["name"],
                kind=ref.get("kind", "Issuer"),
                group=ref.get("group", CERT_MANAGER_GROUP),
            ),
            request=request,
            private_key=private_key,
            renew_before=renew_before,
            renew_before_percentage=percentage,
            labels=dict(sorted(template.get("labels", {}).items())),
            annotations=dict(sorted(template.get("annotations", {}).items())),
            spec_usages=tuple(spec.get("usages", ())),
        ),
        [],
    )


Complaint = Callable[..., None]


def _duration(spec: Mapping[str, JSON], field: str, bad: Complaint) -> timedelta | None:
    if field not in spec:
        return None
    try:
        return durations.parse(spec[field])
    except ValueError as exc:
        bad(field, str(exc))
        return None


def _request(spec: Mapping[str, JSON], bad: Complaint) -> Request:
    parsed = _duration(spec, "duration", bad)
    duration = parsed if parsed is not None else DEFAULT_DURATION
    if parsed is not None and duration < _MIN_DURATION:
        bad("duration", f"must be at least 1h, got {spec['duration']}")

    literal = spec.get("literalSubject", "")
    if literal:
        for other in ("commonName", "subject"):
            if other in spec:
                bad(other, "cannot be combined with literalSubject")
        try:
            x509.Name.from_rfc4514_string(literal)
        except ValueError as exc:
            bad("literalSubject", f"not an RFC 4514 distinguished name: {exc}")

    identities = (
        "commonName",
        "literalSubject",
        "dnsNames",
        "ipAddresses",
        "uris",
        "emailAddresses",
    )
    if not any(spec.get(field) for field in identities):
        bad("", f"at least one identity is required: one of {', '.join(identities)}")

    is_ca = bool(spec.get("isCA", False))
    return Request(
        common_name=spec.get("commonName", ""),
        literal_subject=literal,
        subject=_subject(spec.get("subject") or {}),
        dns_names=_normalised(spec, "dnsNames", names.dns_name, bad),
        ip_addresses=tuple(
            sorted(_normalised(spec, "ipAddresses", names.ip_address, bad), key=names.ip_sort_key)
        ),
        uris=_normalised(spec, "uris", names.uri, bad),
        email_addresses=_normalised(spec, "emailAddresses", names.email, bad),
        duration=duration,
        is_ca=is_ca,
        usages=_usages(spec, is_ca),
    )


def _normalised(
    spec: Mapping[str, JSON], field: str, normalise: Callable[[str], str], bad: Complaint
) -> tuple[str, ...]:
    values = []
    for index, value in enumerate(spec.get(field, [])):
        try:
            values.append(normalise(value))
        except ValueError as exc:
            bad(field, str(exc), index)
    return names.canonical_set(values)


_USAGE_ALIASES = {"signing": "digital signature", "s/mime": "email protection"}


def _usages(spec: Mapping[str, JSON], is_ca: bool) -> tuple[str, ...]:
    algorithm = (spec.get("privateKey") or {}).get("algorithm", "ECDSA")
    if "usages" in spec:
        usages = {_USAGE_ALIASES.get(u, u) for u in spec["usages"]}
    else:
        # cert-manager's defaults; key encipherment means something only for RSA keys.
        usages = {"digital signature"} | ({"key encipherment"} if algorithm == "RSA" else set())
    if is_ca:
        usages.add("cert sign")
    return tuple(sorted(usages))


def _subject(subject: Mapping[str, JSON]) -> Subject:
    return Subject(
        organizations=tuple(subject.get("organizations", ())),
        countries=tuple(subject.get("countries", ())),
        organizational_units=tuple(subject.get("organizationalUnits", ())),
        localities=tuple(subject.get("localities", ())),
        provinces=tuple(subject.get("provinces", ())),
        street_addresses=tuple(subject.get("streetAddresses", ())),
        postal_codes=tuple(subject.get("postalCodes", ())),
        serial_number=subject.get("serialNumber", ""),
    )


def _key_spec(key: Mapping[str, JSON], bad: Complaint) -> KeySpec:
    algorithm = key.get("algorithm", "ECDSA")
    default_size = {"RSA": 2048, "ECDSA": 256, "Ed25519": 0}[algorithm]
    size = key.get("size", default_size)
    if algorithm == "RSA" and size not in _RSA_SIZES:
        bad("privateKey", f"RSA size must be between 2048 and 8192, got {size}", "size")
    if algorithm == "ECDSA" and size not in _ECDSA_SIZES:
        bad("privateKey", f"ECDSA size must be 256, 384 or 521, got {size}", "size")
    if algorithm == "Ed25519" and "size" in key:
        bad("privateKey", "Ed25519 keys have no size; remove it", "size")
    return KeySpec(
        algorithm=algorithm,
        size=0 if algorithm == "Ed25519" else size,
        encoding=key.get("encoding", "PKCS1"),
        rotation_policy=key.get("rotationPolicy", "Always"),
    )


# --- Issuer and ClusterIssuer ------------------------------------------------------------------


def _issuer(document: Document, supported: set[str]) -> tuple[IssuerSpec | None, list[Problem]]:
    body = document.body
    kind = body["kind"]
    namespace = "" if kind == "ClusterIssuer" else _namespace(document)
    ((issuer_type, config),) = body["spec"].items()
    if issuer_type not in supported:
        known = ", ".join(sorted(supported))
        message = f"the {issuer_type} issuer is not supported yet (supported: {known})"
        return None, [document.problem(("spec", issuer_type), message)]
    if kind == "ClusterIssuer" and body["metadata"].get("namespace"):
        return None, [
            document.problem(
                ("metadata", "namespace"), "a ClusterIssuer has no namespace; remove it"
            )
        ]
    return (
        IssuerSpec(
            key=ObjectKey(kind, namespace, body["metadata"]["name"]),
            source=Source(document.path, document.line),
            type=issuer_type,
            config=config or {},
        ),
        [],
    )


# --- Bundle -----------------------------------------------------------------------------------


def _bundle_targets(found: _Collected, config: Config) -> list[Problem]:
    """Bundle files stay out of gitcert's own files and out of each other's way."""
    reserved = {CONFIG_PATH, ".sops.yaml"}
    owned = (*config.manifest_paths, config.secrets_path, config.status_path, config.bundles_path)
    taken: dict[str, str] = {}
    problems = []
    for name, bundle in sorted(found.bundles.items()):
        document = found.bundle_documents[name]
        for index, path in enumerate(bundle.target.files):
            field = ("spec", "target", "files", index)
            parts = path.split("/")
            if path.startswith("/") or ".." in parts or parts[0] == ".git" or "" in parts:
                reason = "must be a relative path inside the repo, outside .git"
            elif path in reserved or any(path.startswith(p + "/") for p in owned):
                reason = f"is gitcert's own ({', '.join(sorted(reserved | set(owned)))})"
            elif path in taken:
                reason = f"is also a target of Bundle {taken[path]}"
            else:
                taken[path] = name
                continue
            problems.append(document.problem(field, f"{path!r} {reason}"))
    return problems


def _bundle(document: Document, bundles: dict[str, BundleSpec]) -> list[Problem]:
    body = document.body
    name = str(body["metadata"]["name"])
    if name in bundles:
        other = bundles[name].source
        return [document.problem(("metadata", "name"), f"Bundle {name} is also defined at {other}")]

    problems: list[Problem] = []
    sources = []
    for index, entry in enumerate(body["spec"]["sources"]):
        ((kind, value),) = entry.items()
        until = None
        if isinstance(value, dict) and "keepPreviousUntil" in value:
            try:
                until = parse_instant(str(value["keepPreviousUntil"]))
            except UserError as exc:
                field = ("spec", "sources", index, kind, "keepPreviousUntil")
                problems.append(document.problem(field, str(exc)))
        details = value if isinstance(value, dict) else {}
        sources.append(
            BundleSource(
                kind=kind,
                name=str(details.get("name", "")),
                key=str(details.get("key", "")),
                path=str(details.get("path", "")),
                text=value if isinstance(value, str) else "",
                keep_previous_until=until,
            )
        )
        if kind == "useDefaultCAs" and value is not True:
            problems.append(
                document.problem(("spec", "sources", index), "useDefaultCAs: true or leave it out")
            )

    target = body["spec"]["target"]
    formats = target.get("additionalFormats") or {}
    selector = target.get("namespaceSelector")
    options = body["spec"].get("options") or {}
    bundles[name] = BundleSpec(
        name=name,
        source=Source(document.path, document.line),
        sources=tuple(sources),
        target=BundleTarget(
            config_map_key=(target.get("configMap") or {}).get("key", ""),
            secret_key=(target.get("secret") or {}).get("key", ""),
            files=tuple(target.get("files") or ()),
            # trust-manager's default passwords: "changeit" for JKS, none for PKCS#12.
            jks=_store(formats.get("jks"), "changeit"),
            pkcs12=_store(formats.get("pkcs12"), ""),
            namespace_labels=dict(selector.get("matchLabels") or {}) if selector else None,
        ),
        exclude_expired=bool(options.get("excludeExpired", False)),
        exclude_non_ca=bool(options.get("excludeNonCA", False)),
    )
    return problems


def _store(spec: Mapping[str, Any] | None, default_password: str) -> TrustStore | None:
    if not spec:
        return None
    return TrustStore(key=str(spec["key"]), password=str(spec.get("password", default_password)))


# --- CertificateRequestPolicy ---------------------------------------------------------------------


def _policy(document: Document, policies: dict[str, CertificateRequestPolicy]) -> list[Problem]:
    """Parse an approver-policy CertificateRequestPolicy into ``policies``; its problems."""
    body = document.body
    name = str(body["metadata"]["name"])
    spec = body["spec"]
    problems = _policy_refusals(document)
    if name in policies:
        other = policies[name].source
        message = f"CertificateRequestPolicy {name} is also defined at {other}"
        problems.append(document.problem(("metadata", "name"), message))

    constraints = _policy_constraints(document, spec.get("constraints") or {}, problems)
    if problems:
        return problems

    allowed = spec.get("allowed") or {}
    subject = allowed.get("subject") or {}
    policies[name] = CertificateRequestPolicy(
        name=name,
        source=Source(document.path, document.line),
        selector=_policy_selector(spec["selector"]),
        allowed=PolicyAllowed(
            common_name=_allowed(allowed.get("commonName")),
            dns_names=_allowed(allowed.get("dnsNames")),
            ip_addresses=_allowed(allowed.get("ipAddresses")),
            uris=_allowed(allowed.get("uris")),
            email_addresses=_allowed(allowed.get("emailAddresses")),
            is_ca=bool(allowed.get("isCA", False)),
            usages=tuple(allowed.get("usages") or ()),
            subject=AllowedSubject(
                **{attr: _allowed(subject.get(key)) for key, attr in SUBJECT_FIELDS}
            ),
        ),
        constraints=constraints,
    )
    return []


def _policy_refusals(document: Document) -> list[Problem]:
    """What a policy asks that gitcert cannot honour: said plainly, never silently ignored."""
    spec = document.body["spec"]
    problems = []
    if document.body["metadata"].get("namespace"):
        message = "a CertificateRequestPolicy is cluster-scoped; remove metadata.namespace"
        problems.append(document.problem(("metadata", "namespace"), message))
    if "plugins" in spec:
        message = "plugins are not supported yet; gitcert evaluates allowed, constraints, selector"
        problems.append(document.problem(("spec", "plugins"), message))
    if not spec["selector"]:
        message = "select with issuerRef and/or namespace (an empty issuerRef selects every issuer)"
        problems.append(document.problem(("spec", "selector"), message))

    allowed = spec.get("allowed") or {}
    entries: list[tuple[tuple[str, ...], Any]]
    entries = [((key,), entry) for key, entry in allowed.items() if key != "subject"]
    entries += [(("subject", key), entry) for key, entry in (allowed.get("subject") or {}).items()]
    for path, entry in entries:
        # TODO: CEL validations need a CEL evaluator (cel-python is not a dependency yet);
        # refusing them keeps a rule from being skipped without anyone noticing.
        if isinstance(entry, dict) and entry.get("validations"):
            field = ("spec", "allowed", *path, "validations")
            message = "CEL validations are not supported yet; use value/values globs or remove them"
            problems.append(document.problem(field, message))
    return problems


def _allowed(entry: Mapping[str, Any] | None) -> AllowedValues | None:
    if entry is None:
        return None
    patterns = (entry["value"],) if "value" in entry else tuple(entry.get("values") or ())
    return AllowedValues(patterns=patterns, required=bool(entry.get("required", False)))


def _policy_constraints(
    document: Document, constraints: Mapping[str, Any], problems: list[Problem]
) -> PolicyConstraints:
    bounds = {}
    for bound in ("minDuration", "maxDuration"):
        if bound not in constraints:
            continue
        try:
            bounds[bound] = durations.parse(constraints[bound])
        except ValueError as exc:
            problems.append(document.problem(("spec", "constraints", bound), str(exc)))
    if "minDuration" in bounds and "maxDuration" in bounds:
        if bounds["minDuration"] > bounds["maxDuration"]:
            message = "minDuration is longer than maxDuration: no duration is allowed"
            problems.append(document.problem(("spec", "constraints", "minDuration"), message))

    key = constraints.get("privateKey") or {}
    if "minSize" in key and "maxSize" in key and key["minSize"] > key["maxSize"]:
        message = "minSize is larger than maxSize: no key size is allowed"
        problems.append(document.problem(("spec", "constraints", "privateKey", "minSize"), message))
    return PolicyConstraints(
        min_duration=bounds.get("minDuration"),
        max_duration=bounds.get("maxDuration"),
        key_algorithm=key.get("algorithm"),
        min_key_size=key.get("minSize"),
        max_key_size=key.get("maxSize"),
    )


def _policy_selector(selector: Mapping[str, Any]) -> PolicySelector:
    ref = selector.get("issuerRef") or {}
    namespace = selector.get("namespace") or {}
    # Empty matchNames or matchLabels select every namespace, as in approver-policy.
    return PolicySelector(
        issuer_name=ref.get("name"),
        issuer_kind=ref.get("kind"),
        issuer_group=ref.get("group"),
        namespace_names=tuple(namespace["matchNames"]) if namespace.get("matchNames") else None,
        namespace_labels=dict(namespace["matchLabels"]) if namespace.get("matchLabels") else None,
    )


# --- relations between objects ------------------------------------------------------------------


def _cross_check(
    certificates: list[tuple[Document, CertificateSpec]],
    issuers: Mapping[ObjectKey, tuple[Document, IssuerSpec]],
) -> list[Problem]:
    problems: list[Problem] = []
    seen_names: dict[ObjectKey, Document] = {}
    secrets: dict[tuple[str, str], list[tuple[Document, CertificateSpec]]] = defaultdict(list)

    for document, cert in certificates:
        if cert.key in seen_names:
            other = seen_names[cert.key]
            problems.append(
                document.problem(
                    ("metadata", "name"), f"{cert.key} is also defined at {other.path}:{other.line}"
                )
            )
        seen_names[cert.key] = document
        secrets[(cert.namespace, cert.secret_name)].append((document, cert))
        problem = _issuer_problem(document, cert, issuers)
        if problem:
            problems.append(problem)

    for (namespace, secret), owners in secrets.items():
        if len(owners) < 2:
            continue
        listed = ", ".join(f"{c.key} ({d.path}:{d.line})" for d, c in owners)
        for document, _ in owners:
            problems.append(
                document.problem(
                    ("spec", "secretName"),
                    f"Secret {namespace}/{secret} is written by more than one Certificate: "
                    + listed,
                )
            )
    return problems


def _issuer_problem(
    document: Document,
    cert: CertificateSpec,
    issuers: Mapping[ObjectKey, tuple[Document, IssuerSpec]],
) -> Problem | None:
    ref = cert.issuer_ref
    field = ("spec", "issuerRef", "name")
    if ref.kind == "ClusterIssuer":
        if ObjectKey("ClusterIssuer", "", ref.name) not in issuers:
            return document.problem(
                field, f"ClusterIssuer {ref.name!r} is not defined in any manifest"
            )
        return None
    if ObjectKey("Issuer", cert.namespace, ref.name) in issuers:
        return None
    elsewhere = sorted(k.namespace for k in issuers if k.kind == "Issuer" and k.name == ref.name)
    if elsewhere:
        return document.problem(
            field,
            f"Issuer {ref.name!r} exists only in namespace {', '.join(elsewhere)}; an Issuer "
            f"serves Certificates in its own namespace ({cert.namespace}); use a ClusterIssuer "
            "to share one",
        )
    hint = ""
    if ObjectKey("ClusterIssuer", "", ref.name) in issuers:
        hint = f"; there is a ClusterIssuer {ref.name!r}: set issuerRef.kind: ClusterIssuer"
    return document.problem(
        field, f"Issuer {ref.name!r} is not defined in namespace {cert.namespace}{hint}"
    )
