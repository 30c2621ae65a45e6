"""Quarterly transparency reports (pure): periods, the tally, and the signed note's body.

A report counts `regulator.query` (answered) and `regulator.refused` events logged in a
calendar quarter. It names authorities, legal bases and query kinds, never a query's
subject: no tenant, peer, address, authorisation reference or key appears in it. The
tally is a pure function of the events, so anyone with the log entries recomputes it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.audit.canonical import canonical_json, format_time
from provisioning.errors import InvalidInput

FORMAT = "vpngw-transparency-report/1"
ANSWERED, REFUSED = "regulator.query", "regulator.refused"
EVENT_TYPES = (ANSWERED, REFUSED)
# Upper bounds of the result-count buckets (max_hits is at most 1000).
BUCKETS = ((0, "0"), (1, "1"), (10, "2-10"), (100, "11-100"), (1000, "101-1000"))
_PERIOD = re.compile(r"\A([0-9]{4})-Q([1-4])\Z")


class PeriodError(InvalidInput, ValueError):
    """Not a calendar quarter like 2026-Q3."""

    def __init__(self, detail: str) -> None:
        super().__init__("period", detail)


@dataclass(frozen=True, order=True)
class Period:
    year: int
    quarter: int

    @classmethod
    def parse(cls, text: str) -> Period:
        match = _PERIOD.match(text) if isinstance(text, str) else None
        if match is None or not 2000 <= int(match.group(1)) <= 9998:
            raise PeriodError(f"period must be a calendar quarter such as 2026-Q3, got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.year}-Q{self.quarter}"

    @property
    def start(self) -> datetime:
        return datetime(self.year, 3 * self.quarter - 2, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first instant after the quarter."""
        if self.quarter == 4:
            return datetime(self.year + 1, 1, 1, tzinfo=UTC)
        return datetime(self.year, 3 * self.quarter + 1, 1, tzinfo=UTC)

    def published_from(self, embargo: timedelta) -> datetime:
        return self.end + embargo


def _bucket(count: int) -> str:
    for bound, label in BUCKETS:
        if count <= bound:
            return label
    return f">{BUCKETS[-1][0]}"


def _rows(counter: Mapping[Any, int], names: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for key, n in sorted(counter.items(), key=lambda kv: tuple(str(k) for k in (
            kv[0] if isinstance(kv[0], tuple) else (kv[0],)))):
        values = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(names, values, strict=True)), "count": n})
    return rows


def tally(events: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Counts over the quarter's query events; None stands for an entry whose payload
    retention has erased (counted, but it cannot be attributed to anything)."""
    answered = refused = erased = 0
    answered_by_authority: Counter[tuple[str, str]] = Counter()
    refused_by_authority: Counter[tuple[str, str]] = Counter()
    by_basis: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    results: Counter[str] = Counter()
    refused_by_reason: Counter[str] = Counter()
    authorisations: set[tuple[str, str, str]] = set()
    for event in events:
        if event is None:
            erased += 1
            continue
        authority = (str(event.get("request_country", "unknown")),
                     str(event.get("request_authority", "unknown")))
        if event.get("type") == ANSWERED:
            answered += 1
            answered_by_authority[authority] += 1
            by_basis[str(event.get("legal_basis", "not recorded"))] += 1
            by_kind[str(event.get("query_kind", "unknown"))] += 1
            results[_bucket(int(event.get("result_count", 0)))] += 1
            # Distinct per authority: two authorities may number their warrants alike.
            authorisations.add((*authority, str(event.get("authorisation_reference", ""))))
        elif event.get("type") == REFUSED:
            refused += 1
            refused_by_authority[authority] += 1
            refused_by_reason[str(event.get("reason", "unknown"))] += 1
    authorities = sorted(set(answered_by_authority) | set(refused_by_authority))
    return {
        "queries_answered": answered,
        "queries_refused": refused,
        "entries_erased": erased,
        "distinct_authorisations": len(authorisations),
        "by_authority": [
            {"country": c, "authority": a, "answered": answered_by_authority[(c, a)],
             "refused": refused_by_authority[(c, a)]}
            for c, a in authorities
        ],
        "by_legal_basis": _rows(by_basis, ("legal_basis",)),
        "by_query_kind": _rows(by_kind, ("query_kind",)),
        "result_counts": [{"records": label, "count": results[label]} for _, label in BUCKETS],
        "refused_by_reason": _rows(refused_by_reason, ("reason",)),
    }


@dataclass(frozen=True)
class LogRange:
    """The entries the counts cover, and a checkpoint that commits to all of them."""

    first_index: int | None
    last_index: int | None
    checkpoint_size: int
    checkpoint: str


def report(period: Period, *, origin: str, counts: Mapping[str, Any], log: LogRange,
           published_at: datetime) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "origin": origin,
        "period": str(period),
        "from": format_time(period.start),
        "to": format_time(period.end),
        "published_at": format_time(published_at),
        "log": {
            **({"first_index": log.first_index, "last_index": log.last_index}
               if log.first_index is not None else {}),
            "checkpoint_size": log.checkpoint_size,
            "checkpoint": log.checkpoint,
        },
        **counts,
    }


def note_body(document: Mapping[str, Any]) -> bytes:
    """The signed note's body: the report as canonical JSON, one line."""
    return canonical_json(dict(document)) + b"\n"


class ReportCheckError(ValueError):
    """A report does not verify; the message says which check failed."""


def check_report(document: Mapping[str, Any], note: str, *, log_vkey_verifier: Any,
                 events: Iterable[Mapping[str, Any] | None] | None = None) -> list[str]:
    """Verify a served report; return the checks that passed, raise on the first failure.

    The note must be signed by the pinned log key and its body must be exactly this
    document; with `events` (the quarter's query entries, read with ops access) every
    count must equal a recount.
    """
    from gateway.audit.note import NoteError, open_note

    try:
        opened = open_note(note, [log_vkey_verifier])
    except NoteError as exc:
        raise ReportCheckError(f"signature: {exc}") from exc
    passed = [f"signature: signed by {opened.signatures[0].label}"]
    if opened.body != note_body(document):
        raise ReportCheckError("document: the JSON served is not the signed note's body")
    passed.append("document: the served JSON is exactly what was signed")
    if document.get("format") != FORMAT:
        raise ReportCheckError(f"format: expected {FORMAT}, got {document.get('format')!r}")
    if events is not None:
        recount = tally(events)
        for key, value in recount.items():
            if document.get(key) != value:
                raise ReportCheckError(
                    f"counts: {key} is {document.get(key)!r} in the report but {value!r} "
                    "recounted from the log entries"
                )
        passed.append(f"counts: every count equals a recount of the log entries "
                      f"({recount['queries_answered']} answered, "
                      f"{recount['queries_refused']} refused)")
    return passed
