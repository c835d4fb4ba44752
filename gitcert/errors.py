"""The exception tree shared by every gitcert layer.

Subclasses are grouped by what the caller does next, not by where the error arose:

- :class:`UserError` and its children are mistakes in the user's input. The command line
  prints them without a traceback and exits 1.
- :class:`TemporaryIssuanceError` means "try again later" and is recorded with backoff.
- :class:`PermanentIssuanceError` means "this request will not succeed as written".
"""

from __future__ import annotations

from dataclasses import dataclass


class GitcertError(Exception):
    """Root of every error gitcert raises on purpose."""


class UserError(GitcertError):
    """Bad input or a bad invocation: reported plainly, never with a traceback."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest, located as precisely as we can."""

    path: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ManifestError(UserError):
    """One or more problems found while loading or validating manifests."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.path, p.line or 0, p.field or ""))
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigError(UserError):
    """gitcert.yaml or .sops.yaml is missing or wrong."""


class GitError(GitcertError):
    """A repository operation failed (bad ref, rejected push, dirty work tree)."""


class PushRejectedError(GitError):
    """The remote refused our commit; ``message`` carries the remote's words."""


class SopsError(GitcertError):
    """The sops binary failed or produced something we refuse to commit."""


class IssuanceError(GitcertError):
    """Signing or verifying a certificate failed."""


class TemporaryIssuanceError(IssuanceError):
    """Retry later. ``retry_after`` (seconds) overrides the default backoff when set."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentIssuanceError(IssuanceError):
    """The request will not succeed until the spec or the issuer changes."""
