"""Configs sealed under a one-time link's token (pure): HKDF-SHA-256 → AES-256-GCM.

The token exists only in the link's URL; the database keeps its hash and the sealed
bytes. Without the token nobody, the server included, can open the config, so a
server-generated private key can wait for the phone that scans it and no longer.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"vpngw sealed config v1"
_NONCE_BYTES = 12


class SealError(Exception):
    """The sealed bytes do not open with this token (wrong token or altered bytes)."""


def _key(token: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
        token.encode("ascii")
    )


def seal(config: str, *, token: str, peer_id: str) -> bytes:
    """nonce || AES-256-GCM(config), bound to the peer it was made for."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(_key(token)).encrypt(nonce, config.encode("utf-8"), peer_id.encode())


def unseal(sealed: bytes, *, token: str, peer_id: str) -> str:
    if len(sealed) <= _NONCE_BYTES:
        raise SealError("sealed config is truncated")
    nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    try:
        return AESGCM(_key(token)).decrypt(nonce, body, peer_id.encode()).decode("utf-8")
    except (InvalidTag, UnicodeDecodeError) as exc:
        raise SealError("sealed config does not open with this token") from exc
