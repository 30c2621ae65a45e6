"""Transparency report periods, the tally against a brute-force count, and its checks."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.audit.note import Ed25519NoteSigner, generate_signer_key, sign_note
from gateway.transparency.report import (
    LogRange,
    Period,
    PeriodError,
    ReportCheckError,
    check_report,
    note_body,
    report,
    tally,
)


def test_periods_are_calendar_quarters() -> None:
    q = Period.parse("2026-Q3")
    assert (q.start, q.end) == (datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC))
    q4 = Period.parse("2026-Q4")
    assert q4.end == datetime(2027, 1, 1, tzinfo=UTC)
    assert q4.published_from(timedelta(days=90)) == datetime(2027, 4, 1, tzinfo=UTC)
    for bad in ("2026-Q5", "2026-q3", "2026Q3", "２０２６-Q3", "1999-Q1", "2026-Q3\n", ""):
        with pytest.raises(PeriodError, match="calendar quarter"):
            Period.parse(bad)


def random_events(rng: random.Random, n: int) -> list[dict[str, Any] | None]:
    events: list[dict[str, Any] | None] = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.1:
            events.append(None)
        elif roll < 0.3:
            events.append({"type": "regulator.refused", "reason": rng.choice(["nonce", "scope"]),
                           "request_country": "PK",
                           "request_authority": rng.choice(["PTA", "FIA"])})
        else:
            events.append({"type": "regulator.query", "request_country": rng.choice(["PK", "AE"]),
                           "request_authority": rng.choice(["PTA", "FIA"]),
                           "legal_basis": rng.choice(["PECA 2016 s.32", "ATA 1997 s.19"]),
                           "query_kind": rng.choice(["attribution.egress", "activity.peer"]),
                           "authorisation_reference": f"LI/{rng.randrange(5)}",
                           "result_count": rng.choice([0, 1, 2, 10, 11, 100, 101, 1000])})
    return events


@pytest.mark.parametrize("seed", range(5))
def test_tally_equals_a_brute_force_count(seed: int) -> None:
    rng = random.Random(seed)
    events = random_events(rng, 300)
    t = tally(events)
    answered = [e for e in events if e and e["type"] == "regulator.query"]
    refused = [e for e in events if e and e["type"] == "regulator.refused"]
    assert t["queries_answered"] == len(answered)
    assert t["queries_refused"] == len(refused)
    assert t["entries_erased"] == events.count(None)
    assert t["distinct_authorisations"] == len(
        {(e["request_country"], e["request_authority"], e["authorisation_reference"])
         for e in answered})
    for row in t["by_authority"]:
        key = (row["country"], row["authority"])
        assert row["answered"] == sum(
            1 for e in answered if (e["request_country"], e["request_authority"]) == key)
        assert row["refused"] == sum(
            1 for e in refused if (e["request_country"], e["request_authority"]) == key)
    small = sum(1 for e in answered if 2 <= e["result_count"] <= 10)
    assert {r["records"]: r["count"] for r in t["result_counts"]}["2-10"] == small
    assert sum(r["count"] for r in t["by_query_kind"]) == len(answered)


def signed(document: dict[str, Any]) -> tuple[str, Any]:
    signer = Ed25519NoteSigner("vpngw.example/log", generate_signer_key())
    return sign_note(note_body(document), [signer]), signer.verifier


def test_check_report_passes_and_catches_every_kind_of_lie() -> None:
    events = random_events(random.Random(7), 50)
    doc = report(Period.parse("2026-Q3"), origin="vpngw.example/log", counts=tally(events),
                 log=LogRange(3, 90, 91, "note"), published_at=datetime(2026, 12, 30,
                                                                        tzinfo=UTC))
    note, verifier = signed(doc)
    assert len(check_report(doc, note, log_vkey_verifier=verifier, events=events)) == 3
    with pytest.raises(ReportCheckError, match="not the signed note's body"):
        check_report({**doc, "queries_answered": 0}, note, log_vkey_verifier=verifier)
    other_note, _other_key = signed(doc)
    with pytest.raises(ReportCheckError, match="signature"):
        check_report(doc, other_note, log_vkey_verifier=verifier)
    # A provider that signs false counts is caught by the recount.
    lying = {**doc, "queries_refused": doc["queries_refused"] + 1}
    lying_note, lying_key = signed(lying)
    with pytest.raises(ReportCheckError, match="queries_refused"):
        check_report(lying, lying_note, log_vkey_verifier=lying_key, events=events)
