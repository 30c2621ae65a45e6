"""`vpngw audit verify|checkpoint|show`: check the log offline, print its head, browse entries."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from gateway.audit import storage
from gateway.audit.canonical import format_time
from gateway.audit.note import Ed25519NoteSigner
from gateway.audit.progress import ProgressReporter
from gateway.audit.schema import log_entries
from gateway.audit.verify import VerifyReport, verify_log
from gateway.db import Database
from gateway.keyfiles import KeyFileError, load_keys
from gateway.settings import SettingsError, load_settings
from provisioning import validation
from provisioning.errors import InvalidInput

PROGRESS_EVERY = 1_000_000
_SUMMARY_SKIP = {"v", "type", "ts", "salt", "tenant_id"}


class _UsageError(Exception):
    pass


def run_audit_command(args: argparse.Namespace) -> int:
    """Entry point from gateway.cli.main for `vpngw audit ...`; returns the exit status."""
    try:
        command = {"verify": _verify, "checkpoint": _checkpoint, "show": _show}[args.audit_cmd]
        if args.audit_cmd == "show":
            _show_filters(args)  # refuse bad input before touching anything
        if args.audit_cmd == "verify" and args.workers is not None and args.workers < 1:
            raise _UsageError("--workers must be at least 1")
        # Files are read here, outside the event loop; the command itself is async.
        return asyncio.run(command(args, _Context.load(args)))
    except (KeyFileError, SettingsError, _UsageError) as exc:
        print(f"vpngw: {exc}", file=sys.stderr)
        return 1


@dataclass(frozen=True)
class _Context:
    db: Database
    signer: Ed25519NoteSigner
    origin: str
    trusted: tuple[str, ...] = ()

    @classmethod
    def load(cls, args: argparse.Namespace) -> _Context:
        data_dir = Path(args.data_dir)
        if not data_dir.is_dir():
            raise _UsageError(f"{data_dir} is not a data directory; run `vpngw init --data-dir "
                              f"{data_dir}` or pass --data-dir")
        trusted = []
        for name in getattr(args, "checkpoint", None) or ():
            try:
                trusted.append(Path(name).read_text(encoding="utf-8"))
            except OSError as exc:
                raise _UsageError(f"cannot read checkpoint file {name}: {exc.strerror}") from None
        settings = load_settings(data_dir)
        keys = load_keys(settings.data_dir)
        origin = settings.audit.origin
        return cls(Database.for_data_dir(settings.database_url, settings.data_dir, pool_size=2),
                   Ed25519NoteSigner(origin, keys.log), origin, tuple(trusted))


# --- verify ----------------------------------------------------------------------------------


async def _verify(args: argparse.Namespace, ctx: _Context) -> int:
    db, signer, origin = ctx.db, ctx.signer, ctx.origin
    # A bar on a terminal, plain lines in a log, nothing extra for --json.
    progress = None if args.json else ProgressReporter(
        sys.stderr, terminal=sys.stderr.isatty(), line_every=PROGRESS_EVERY)
    try:
        report = await verify_log(db, verifier=signer.verifier, origin=origin, progress=progress,
                                  trusted=ctx.trusted, workers=args.workers)
    except ValueError as exc:  # a --checkpoint file that is not this log's
        raise _UsageError(str(exc)) from None
    finally:
        if progress is not None:
            progress.close()
        await db.dispose()
    if args.json:
        print(json.dumps({**report.to_dict(), "origin": origin, "vkey": signer.vkey()},
                         indent=2, sort_keys=True))
    else:
        _print_report(report, origin)
    if report.problem is not None:
        p = report.problem
        print(f"vpngw: audit log verification FAILED: {p.kind.value} at index {p.index}: "
              f"{p.detail}", file=sys.stderr)
        return 1
    return 0


def _print_report(report: VerifyReport, origin: str) -> None:
    latest = ("none" if report.latest_checkpoint is None
              else f"latest at size {report.latest_checkpoint:,}")
    rows = [
        ("log", origin),
        ("entries", f"{report.entries:,}"),
        ("redacted", f"{report.redacted:,}"),
        ("checkpoints", f"{report.checkpoints:,} verified ({latest})"),
        ("root", base64.b64encode(report.root).decode("ascii")),
        ("time", f"{report.elapsed:.2f} s ({report.rate:,.0f} entries/s)"),
    ]
    if report.problem is None:
        rows.append(("result", "OK: every entry, checkpoint and signature verifies"))
    else:
        p = report.problem
        rows += [("result", f"FAILED: {p.kind.value}"),
                 ("first bad index", str(p.index)),
                 ("detail", p.detail)]
        if p.checkpoint_size is not None:
            rows.append(("checkpoint", f"tree size {p.checkpoint_size}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")


# --- checkpoint -----------------------------------------------------------------------------


async def _checkpoint(args: argparse.Namespace, ctx: _Context) -> int:
    from gateway.audit.log import AuditLog
    from gateway.clock import SystemClock

    db, signer, origin = ctx.db, ctx.signer, ctx.origin
    try:
        log = AuditLog(db=db, signer=signer, origin=origin, clock=SystemClock())
        size, note = await log.latest_checkpoint()
    finally:
        await db.dispose()
    if args.json:
        print(json.dumps({"origin": origin, "size": size, "checkpoint": note,
                          "vkey": signer.vkey()}, indent=2, sort_keys=True))
    else:
        sys.stdout.write(note)
        print()
        print(f"vkey: {signer.vkey()}")
    return 0


# --- show ------------------------------------------------------------------------------------


def _time_arg(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        return validation.timestamp(flag, value)
    except InvalidInput as error:
        raise _UsageError(f"{flag} {value!r}: {error.detail.split(': ', 1)[1]}") from None


def _summary(event: dict[str, Any] | None, width: int = 80) -> str:
    if event is None:
        return "(payload erased by retention)"
    parts = []
    for key in sorted(event):
        if key in _SUMMARY_SKIP:
            continue
        value = event[key]
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{key}={text}")
    summary = " ".join(parts)
    return summary if len(summary) <= width else summary[: width - 1] + "…"


def _show_filters(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    if args.limit < 1:
        raise _UsageError("--limit must be at least 1")
    return _time_arg(args.since, "--since"), _time_arg(args.until, "--until")


async def _show(args: argparse.Namespace, ctx: _Context) -> int:
    since, until = _show_filters(args)
    db = ctx.db
    t = log_entries
    query = select(t.c.idx, t.c.ts, t.c.type, t.c.tenant_id, t.c.leaf, t.c.leaf_hash)
    if args.type:
        query = query.where(t.c.type == args.type)
    if args.tenant:
        query = query.where(t.c.tenant_id == args.tenant)
    if since is not None:
        query = query.where(t.c.ts >= since)
    if until is not None:
        query = query.where(t.c.ts < until)
    # From --since onwards the first N match; otherwise the newest N.
    newest = since is None
    query = query.order_by(t.c.idx.desc() if newest else t.c.idx).limit(args.limit)
    try:
        async with db.read() as conn:
            rows = list((await conn.execute(query)).all())
            opener = storage.Opener.of(conn)
    finally:
        await db.dispose()
    if newest:
        rows.reverse()
    docs = []
    for row in rows:
        event = opener.event(row.leaf, row.leaf_hash)
        docs.append({"index": int(row.idx), "ts": format_time(row.ts), "type": row.type,
                     "tenant_id": row.tenant_id if row.tenant_id is not None
                     else (event or {}).get("tenant_id"),
                     "redacted": event is None, "event": event})
    if args.json:
        print(json.dumps(docs, indent=2, sort_keys=True))
    else:
        _table([{"index": d["index"], "ts": d["ts"], "type": d["type"],
                 "tenant": d["tenant_id"] or "", "summary": _summary(d["event"])} for d in docs],
               ("index", "ts", "type", "tenant", "summary"))
    return 0


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(no entries)")
        return
    cells = [[str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
