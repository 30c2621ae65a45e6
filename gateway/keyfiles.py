"""Private keys in the data dir: created once with mode 0600, refused if readable by others."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from gateway.privatefiles import create_private, exposure

WIREGUARD_KEY = "wireguard.key"
LOG_KEY = "log-signing.key"
RESPONSE_KEY = "response-signing.key"


class KeyFileError(Exception):
    """A key file is missing, malformed or too widely readable."""


def _read_secret(path: Path) -> bytes:
    if not path.exists():
        raise KeyFileError(f"{path} is missing; run `vpngw init --data-dir {path.parent}`")
    problem = exposure(path)
    if problem is not None:
        raise KeyFileError(problem)
    return path.read_bytes()


def _raw32(path: Path) -> bytes:
    try:
        raw = base64.b64decode(_read_secret(path).strip(), validate=True)
    except ValueError as exc:
        raise KeyFileError(f"{path}: not base64") from exc
    if len(raw) != 32:
        raise KeyFileError(f"{path}: must hold 32 bytes of base64")
    return raw


@dataclass(frozen=True)
class GatewayKeys:
    wireguard: X25519PrivateKey
    log: Ed25519PrivateKey
    response: Ed25519PrivateKey

    @property
    def wireguard_public(self) -> str:
        raw = self.wireguard.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    @property
    def wireguard_private_raw(self) -> bytes:
        return self.wireguard.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def __repr__(self) -> str:
        return "GatewayKeys(<private>)"


def _new_raw_key(algorithm: str) -> bytes:
    key = X25519PrivateKey.generate() if algorithm == "x25519" else Ed25519PrivateKey.generate()
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def create_keys(data_dir: Path) -> list[Path]:
    """Create each missing key file; existing keys are never replaced."""
    created = []
    for name, algorithm in ((WIREGUARD_KEY, "x25519"), (LOG_KEY, "ed25519"),
                            (RESPONSE_KEY, "ed25519")):
        path = data_dir / name
        if not path.exists():
            create_private(path, base64.b64encode(_new_raw_key(algorithm)) + b"\n")
            created.append(path)
    return created


def load_keys(data_dir: Path) -> GatewayKeys:
    return GatewayKeys(
        wireguard=X25519PrivateKey.from_private_bytes(_raw32(data_dir / WIREGUARD_KEY)),
        log=Ed25519PrivateKey.from_private_bytes(_raw32(data_dir / LOG_KEY)),
        response=Ed25519PrivateKey.from_private_bytes(_raw32(data_dir / RESPONSE_KEY)),
    )
