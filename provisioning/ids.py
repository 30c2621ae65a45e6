"""Time-ordered identifiers (UUIDv7 layout) so keyset pagination follows creation order."""

from __future__ import annotations

import secrets
import time
import uuid


def new_id(now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = secrets.randbits(74)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= (rand >> 62) << 64  # 12 bits
    value |= 0b10 << 62  # RFC 9562 variant
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def is_id(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except (ValueError, TypeError, AttributeError):
        return False
