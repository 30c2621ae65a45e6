"""`vpngw-regulator report verify`: check a published transparency report, and recount it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any
from urllib.parse import urlencode

import aiohttp

from gateway.transparency.report import (
    EVENT_TYPES,
    Period,
    PeriodError,
    ReportCheckError,
    check_report,
)


def add_report_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    report = sub.add_parser("report", help="transparency reports")
    rsub = report.add_subparsers(dest="report_command", required=True)
    verify = rsub.add_parser(
        "verify", parents=parents,
        help="check a quarter's report: signed by the pinned log key, and (with --ops-token) "
             "every count equal to a recount of the log entries")
    verify.add_argument("--period", required=True, help="calendar quarter, e.g. 2026-Q3")
    verify.add_argument("--ops-token", help="an ops token, to read the log entries and recount")
    verify.set_defaults(func=cmd_report_verify)


async def _fetch(url: str, period: Period, ops_token: str | None,
                 limits: aiohttp.ClientTimeout) -> tuple[dict[str, Any],
                                                         list[dict[str, Any] | None] | None]:
    async with aiohttp.ClientSession(timeout=limits) as session:
        async with session.get(f"{url}/transparency/v1/reports/{period}") as resp:
            served = await resp.json(content_type=None)
            if resp.status != 200:
                raise RuntimeError(f"the gateway answered {resp.status}: "
                                   f"{served.get('detail', served)}")
        if ops_token is None:
            return served, None
        events: list[dict[str, Any] | None] = []
        for kind in EVENT_TYPES:
            params: dict[str, str | int] = {"type": kind, "since": period.start.isoformat(),
                                            "until": period.end.isoformat(), "limit": 1000}
            while True:
                async with session.get(f"{url}/ops/v1/audit?{urlencode(params)}",
                                       headers={"Authorization": f"Bearer {ops_token}"}) as resp:
                    page = await resp.json(content_type=None)
                    if resp.status != 200:
                        raise RuntimeError(f"reading the log answered {resp.status}: "
                                           f"{page.get('detail', page)}")
                events += [item["event"] for item in page["items"]]
                if page["next"] is None:
                    break
                params["after"] = int(page["next"])
        return served, events


def cmd_report_verify(args: argparse.Namespace) -> int:
    from gateway.regulator.cli import EXIT_OK, Failed, UsageError, _log_key

    try:
        period = Period.parse(args.period)
    except PeriodError as exc:
        raise UsageError(str(exc)) from exc
    verifier = _log_key(args)
    try:
        served, events = asyncio.run(_fetch(args.url.rstrip("/"), period, args.ops_token,
                                            aiohttp.ClientTimeout(total=args.timeout)))
    except (aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
        raise Failed(f"could not fetch the report: {exc}") from exc
    try:
        passed = check_report(served["report"], served["note"], log_vkey_verifier=verifier,
                              events=events)
    except ReportCheckError as exc:
        raise Failed(str(exc), reported=False) from exc
    if args.json:
        json.dump({"ok": True, "period": str(period), "checks": passed,
                   "report": served["report"]}, sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        doc = served["report"]
        print(f"{period}: {doc['queries_answered']} queries answered, "
              f"{doc['queries_refused']} refused, {doc['distinct_authorisations']} "
              "distinct authorisations")
        for line in passed:
            print(f"ok  {line}")
        if events is None:
            print("(counts not recounted: give --ops-token to read the log entries)")
    return EXIT_OK
