"""The refusal limiter and the request reference taken from a refused body."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from gateway.regulator.refusals import RefusalWindow, admit, refusal_event, request_reference

START = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


class _Limiter:
    """The windows of several key ids kept in memory, as the database keeps them."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.windows: dict[str, RefusalWindow] = {}

    def admit(self, keyid: str, seconds: float) -> int | None:
        window, dropped = admit(
            self.windows.get(keyid), START + timedelta(seconds=seconds), self.per_minute
        )
        self.windows[keyid] = window
        return dropped


def test_limiter_admits_per_key_per_minute_and_reports_what_it_dropped() -> None:
    limiter = _Limiter(per_minute=2)
    assert [limiter.admit("pta", 0.0) for _ in range(5)] == [0, 0, None, None, None]
    assert limiter.admit("other", 1.0) == 0  # each key id has its own budget
    assert limiter.admit("pta", 59.9) is None
    # A new minute: the first logged refusal says how many went unlogged before it.
    assert limiter.admit("pta", 60.0) == 4
    assert limiter.admit("pta", 61.0) == 0
    assert limiter.admit("pta", 62.0) is None


def test_zero_per_minute_logs_nothing() -> None:
    limiter = _Limiter(per_minute=0)
    assert limiter.admit("pta", 0.0) is None
    assert limiter.admit("pta", 120.0) is None


def test_request_reference_only_takes_plain_short_strings() -> None:
    good = {"request_id": {"country": "PK", "authority": "PTA", "number": "2026-1"}}
    assert request_reference(json.dumps(good).encode()) == {
        "request_country": "PK", "request_authority": "PTA", "request_number": "2026-1"}
    odd = {"request_id": {"country": "P\nK", "authority": "x" * 65, "number": 7}}
    assert request_reference(json.dumps(odd).encode()) == {}
    assert request_reference(b"{") == {}
    assert request_reference(b"[" * 100_000) == {}  # too deep for the parser: nothing
    assert request_reference(b'{"request_id": "PK/PTA/1"}') == {}


def test_refusal_event_fields() -> None:
    event = refusal_event(keyid="pta", reason="signature-nonce", body=b"{}", suppressed=3)
    assert event.type == "regulator.refused"
    assert dict(event.attrs) == {
        "key_id": "pta", "reason": "signature-nonce", "suppressed": 3,
        "body_sha256": "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}
