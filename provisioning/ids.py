"""Time-ordered identifiers (UUIDv7 layout) so keyset pagination follows creation order."""

from __future__ import annotations

import secrets
import time
import uuid

from provisioning.validation import IdFormat

# The canonical lower-case form, the only one the API hands out.
UUID = IdFormat(
    "id",
    "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    36,
    "01936a5e-8f3c-7d2a-9b1e-4c5d6e7f8a9b",
)


def new_id(now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = secrets.randbits(74)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= (rand >> 62) << 64  # 12 bits
    value |= 0b10 << 62  # RFC 9562 variant
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def is_id(text: object) -> bool:
    return isinstance(text, str) and UUID.matches(text)
