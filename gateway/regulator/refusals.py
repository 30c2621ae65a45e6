"""Refused regulator requests: a `regulator.refused` event for registered key ids, rate-limited.

A refusal naming a key id the registry knows (active or revoked) is worth a line in the
tamper-evident log: someone holding, or pretending to hold, a regulator's key was turned
away. Anyone can claim any key id, so the events are limited per key id and minute; what
the limit drops is counted into the next event (`suppressed`). The budget is shared by
every control-plane process through the database (gateway.regulator.refusal_windows), so
a second process does not double it; only refusals pay for it, never accepted requests.
A key id the registry does not know goes only to the process log and a metric: writing
attacker-chosen names into the permanent log would let anyone fill it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from provisioning.events import Event

log = structlog.get_logger("vpngw.regulator")

EVENT_TYPE = "regulator.refused"
WINDOW_SECONDS = 60.0
_REQUEST_ID_FIELDS = ("country", "authority", "number")
_MAX_FIELD = 64


@dataclass(frozen=True)
class RefusalWindow:
    """One key id's fixed one-minute window: refusals logged in it, and dropped since the
    last logged one."""

    started: datetime
    logged: int = 0
    suppressed: int = 0


def admit(
    window: RefusalWindow | None, now: datetime, per_minute: int
) -> tuple[RefusalWindow, int | None]:
    """The window after one more refusal, and None if that refusal is over the limit (else
    how many were dropped before it)."""
    if window is None or (now - window.started).total_seconds() >= WINDOW_SECONDS:
        carried = window.suppressed if window is not None else 0
        window = RefusalWindow(started=now, suppressed=carried)
    if window.logged >= per_minute:
        return RefusalWindow(window.started, window.logged, window.suppressed + 1), None
    return RefusalWindow(window.started, window.logged + 1, 0), window.suppressed


def request_reference(body: bytes) -> dict[str, str]:
    """The body's request_id fields, when the body says them plainly; otherwise nothing."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    request_id = doc.get("request_id") if isinstance(doc, dict) else None
    if not isinstance(request_id, dict):
        return {}
    found = {}
    for name in _REQUEST_ID_FIELDS:
        value = request_id.get(name)
        if (isinstance(value, str) and 0 < len(value) <= _MAX_FIELD and value.isascii()
                and value.isprintable()):
            found[f"request_{name}"] = value
    return found


def refusal_event(*, keyid: str, reason: str, body: bytes, suppressed: int) -> Event:
    attrs: dict[str, str | int] = {
        "key_id": keyid,
        "reason": reason,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        **request_reference(body),
    }
    if suppressed:
        attrs["suppressed"] = suppressed
    return Event(EVENT_TYPE, attrs)


class RefusalRecorder:
    """Decides where one refusal goes: the audit log, or only the process log and metrics."""

    def __init__(
        self,
        *,
        admit: Callable[[str], Awaitable[int | None]],
        is_registered: Callable[[str], Awaitable[bool]],
        record: Callable[[list[Event]], Awaitable[None]],
        count: Callable[[dict[str, str]], None],
    ) -> None:
        self._admit = admit
        self._is_registered = is_registered
        self._record = record
        self._count = count

    async def refused(self, *, keyid: str | None, reason: str, body: bytes) -> None:
        registered = keyid is not None and await self._is_registered(keyid)
        self._count({"reason": reason, "key": "registered" if registered else "unknown"})
        if not registered or keyid is None:
            log.warning("regulator request refused", check=reason, key="unknown")
            return
        try:
            suppressed = await self._admit(keyid)
        except Exception:  # the refusal stands whether or not its budget could be read
            log.exception("regulator refusal could not be counted against its limit")
            return
        if suppressed is None:
            log.warning("regulator request refused; over the audit limit", check=reason,
                        regulator_keyid=keyid)
            return
        log.warning("regulator request refused", check=reason, regulator_keyid=keyid)
        event = refusal_event(keyid=keyid, reason=reason, body=body, suppressed=suppressed)
        try:
            await self._record([event])
        except Exception:  # the refusal stands whether or not it could be logged
            log.exception("regulator refusal could not be logged")
