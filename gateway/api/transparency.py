"""Public transparency reports (/transparency/v1): counts of lawful-access queries, signed."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from gateway.http import appkeys
from gateway.http.params import Parsed
from gateway.http.routes import Route, json_reply, ref
from gateway.transparency.report import Period
from gateway.transparency.service import NotPublished, ReportNotReady, build_report

PERIOD = Parsed(
    "period",
    Period.parse,
    {"type": "string", "pattern": "^[0-9]{4}-Q[1-4]$", "examples": ["2026-Q3"]},
    location="path",
    malformed_is_missing=False,
    description="A calendar quarter",
)


async def get_report(request: web.Request) -> web.Response:
    period = PERIOD.value(request)
    settings = request.app[appkeys.SETTINGS]
    audit_log = request.app[appkeys.AUDIT_LOG]
    async with request.app[appkeys.DATABASE].read() as conn:
        document, note = await build_report(
            conn,
            period,
            now=request.app[appkeys.CLOCK].now(),
            embargo=timedelta(days=settings.transparency.embargo_days),
            signer=audit_log.signer,
        )
    return web.json_response({"report": document, "note": note})


ROUTES = [
    Route(
        "GET",
        "/transparency/v1/reports/{period}",
        get_report,
        "A quarter's transparency report (e.g. 2026-Q3), as JSON and as a note signed "
        "by the log key; published once the quarter has ended plus the embargo",
        "public",
        params=(PERIOD,),
        replies=(json_reply(200, "The report and its signed note", ref("TransparencyReport")),),
        errors={
            NotPublished.status: (NotPublished.code,),
            ReportNotReady.status: (ReportNotReady.code,),
        },
    ),
]
