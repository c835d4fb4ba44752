"""Issuer plugins: the registry, and the interface re-exported from :mod:`.base`.

Plugins register under the ``gitcert.issuers`` entry-point group, keyed by the field name
under an Issuer's ``spec`` (``selfSigned``, ``ca``, ...). The built-in ones are also
registered here directly, so a source checkout works without installed metadata.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging

from gitcert.issuers.base import (
    Issuer,
    IssuerContext,
    IssuerPlugin,
    KeyPair,
    Located,
    Revoker,
    SignedCertificate,
    SigningRequest,
    certificate_problems,
    resource_namespace,
)

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "gitcert.issuers"

__all__ = [
    "ENTRY_POINT_GROUP",
    "Issuer",
    "IssuerContext",
    "IssuerPlugin",
    "KeyPair",
    "Located",
    "Revoker",
    "SignedCertificate",
    "SigningRequest",
    "certificate_problems",
    "registry",
    "resource_namespace",
]


@functools.cache
def registry() -> dict[str, IssuerPlugin]:
    """Built-in plugins plus any installed under the entry-point group."""
    from gitcert.issuers.acme import ACMEIssuer
    from gitcert.issuers.ca import CAIssuer
    from gitcert.issuers.selfsigned import SelfSignedIssuer
    from gitcert.issuers.vault import VaultIssuer

    plugins: dict[str, IssuerPlugin] = {
        "selfSigned": SelfSignedIssuer,
        "ca": CAIssuer,
        "acme": ACMEIssuer,
        "vault": VaultIssuer,
    }
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in plugins:
            continue
        try:
            plugins[entry.name] = entry.load()
        except Exception as exc:  # a broken third-party plugin must not break the others
            log.warning("issuer plugin %s could not be loaded: %s", entry.name, exc)
    return plugins
