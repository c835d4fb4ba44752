"""``gitcert init``: a new cert repository with settings, sops rules, an age key and examples.

The age identity is written where sops looks by default (``$SOPS_AGE_KEY_FILE``, else
``$XDG_CONFIG_HOME/sops/age/keys.txt``) or to a file the user names, with mode 0600, and is
never printed. Only its public recipient goes into ``.sops.yaml``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pyrage import x25519

from gitcert import gitops
from gitcert.errors import UserError
from gitcert.gitops import Target

CONFIG = """\
# gitcert settings. Every key is optional; these are the defaults.
apiVersion: gitcert.dev/v1alpha1
kind: Config
spec:
  manifests: [manifests]          # where Certificate and Issuer manifests live
  secretsPath: secrets            # gitcert writes secrets/<namespace>/<secretName>.yaml
  statusPath: status              # and status/<namespace>/<certificate>.yaml
  clusterResourceNamespace: cert-manager   # where ClusterIssuers find their Secrets
  concurrency: 4
  git:
    remote: origin
    branch: main
    author: {name: gitcert, email: gitcert@localhost}
"""

SOPS_RULES = """\
# sops creation rules. Every Secret value is encrypted except tls.crt and ca.crt, which stay
# readable so that a pull request shows what changed and `gitcert plan` needs no key.
# mac_only_encrypted lets gitcert repair labels and annotations without decrypting anything.
stores:
  yaml:
    indent: 2
creation_rules:
  - path_regex: ^secrets/.*\\.ya?ml$
    unencrypted_regex: ^(apiVersion|kind|metadata|type|tls\\.crt|ca\\.crt)$
    mac_only_encrypted: true
    age: {recipients}
"""

EXAMPLE = """\
# A private PKI in three steps: a self-signed root, a CA issuer that uses it, a leaf.
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: selfsigned
spec:
  selfSigned: {{}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: root-ca
  namespace: cert-manager
spec:
  isCA: true
  commonName: {name} Root CA
  secretName: root-ca
  duration: 87600h          # 10 years
  privateKey:
    algorithm: ECDSA
    size: 384
  issuerRef:
    name: selfsigned
    kind: ClusterIssuer
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: ca
spec:
  ca:
    secretName: root-ca     # in the clusterResourceNamespace (cert-manager)
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: web
  namespace: default
spec:
  secretName: web-tls
  dnsNames:
    - web.example.test
  duration: 2160h           # 90 days
  issuerRef:
    name: ca
    kind: ClusterIssuer
"""


@dataclass(frozen=True)
class InitResult:
    path: Path
    recipient: str
    key_file: Path
    commit: str


def default_key_file() -> Path:
    if os.environ.get("SOPS_AGE_KEY_FILE"):
        return Path(os.environ["SOPS_AGE_KEY_FILE"])
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "sops" / "age" / "keys.txt"


def write_identity(key_file: Path) -> str:
    """Append a new age identity to ``key_file`` (0600) and return its public recipient."""
    identity = x25519.Identity.generate()
    recipient = str(identity.to_public())
    key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="ascii") as f:
        f.write(f"# public key: {recipient}\n{identity}\n")
    os.chmod(key_file, 0o600)
    return recipient


def _template_files(template: Path) -> dict[str, bytes]:
    """Every file of a template cert repo, except what gitcert or sops generate."""
    if not (template / "gitcert.yaml").is_file():
        raise UserError(f"{template} has no gitcert.yaml; --from needs a cert repo to copy")
    skipped = {".git", "secrets", "status", ".sops.yaml"}
    files = {}
    for file in sorted(template.rglob("*")):
        relative = file.relative_to(template)
        if file.is_file() and relative.parts[0] not in skipped:
            files[relative.as_posix()] = file.read_bytes()
    return files


def init(
    path: Path,
    key_file: Path | None,
    recipients: list[str],
    template: Path | None = None,
    branch: str = "main",
) -> InitResult:
    """Create a cert repo at ``path`` (which must be absent or empty) and commit it.

    The manifests come from ``template`` (a cert repo to copy) or a small example; the
    ``.sops.yaml`` is always new, for the given recipients or a freshly generated key.
    """
    if path.exists() and any(path.iterdir()):
        raise UserError(f"{path} exists and is not empty; gitcert init makes a new repository")
    if template is not None:
        files = _template_files(template)
    else:
        files = {
            "gitcert.yaml": CONFIG.encode(),
            "manifests/pki.yaml": EXAMPLE.format(name=path.resolve().name).encode(),
        }

    for recipient in recipients:
        try:
            x25519.Recipient.from_str(recipient)
        except Exception as exc:  # pyrage raises its own error types
            raise UserError(f"{recipient!r} is not an age recipient (age1...): {exc}") from exc

    key_file = key_file or default_key_file()
    recipient = recipients[0] if recipients else write_identity(key_file)
    all_recipients = ",".join(dict.fromkeys([recipient, *recipients]))
    files[".sops.yaml"] = SOPS_RULES.format(recipients=all_recipients).encode()

    path.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)

    repo = gitops.init_repository(path, branch)
    target = Target(branch=f"refs/heads/{branch}", tree=gitops.resolve(repo, None))
    commit = gitops.commit_changes(
        repo,
        target,
        files,
        "gitcert init\n",
        ("gitcert", "gitcert@localhost"),
    )
    # The files were written before the first commit existed; record them in the index
    # so `git status` is clean.
    gitops.sync_index(repo)
    return InitResult(path, recipient, key_file, commit)
