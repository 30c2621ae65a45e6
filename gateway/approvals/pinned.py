"""Sensitive settings read from gateway.toml at start, held until approved when they change.

The retention period and the egress mapping come from the settings file, which anyone
with the host can edit. With approvals required, the value in force lives in the
database: a changed file is noticed at start, logged, and *held* — the gateway keeps the
value in force until an ops principal requests the change over the API and a second one
approves it. Switching approvals off (or on) after the first start is itself recorded
in the audit log (`approvals.configured`), so it cannot pass silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.approvals import store
from gateway.approvals.operations import RETENTION, retention_changed
from gateway.commands import Commands
from gateway.db import Database
from gateway.settings import Settings
from provisioning.events import Event, Outcome

log = structlog.get_logger("vpngw.approvals")

REQUIRED = "approvals.required"
SETTINGS_ACTOR = "settings"  # a change read from gateway.toml at start


@dataclass(frozen=True)
class Pinned:
    retention_days: int  # in force
    retention_held: int | None  # the file's value, waiting for approval


def approvals_configured(settings: Settings) -> Event:
    a = settings.approvals
    return Event("approvals.configured", {
        "required": "true" if a.required else "false",
        "expiry_hours": f"{a.expiry_hours:g}",
        "actor": SETTINGS_ACTOR,
    })


async def pin_at_start(commands: Commands, settings: Settings) -> Pinned:
    """Record approvals' setting (an event when it changed) and settle the retention period."""
    a = settings.approvals
    wanted = settings.audit.retention_days

    async def step(conn: AsyncConnection) -> Outcome[Pinned]:
        now = commands.clock.now()
        events: list[Event] = []
        shown = json.dumps({"required": a.required, "expiry_hours": a.expiry_hours})
        recorded = await store.setting_in_force(conn, REQUIRED)
        if recorded != shown:
            await store.set_setting(conn, REQUIRED, shown, by=SETTINGS_ACTOR, now=now)
            if recorded is not None:  # a first start records it; the process log shows it
                events.append(approvals_configured(settings))
        stored = await store.setting_in_force(conn, RETENTION)
        if stored is None:  # first start: the file's value is the baseline
            await store.set_setting(conn, RETENTION, str(wanted), by=SETTINGS_ACTOR, now=now)
            return Outcome(Pinned(wanted, None), tuple(events))
        in_force = int(stored)
        if in_force == wanted:
            return Outcome(Pinned(in_force, None), tuple(events))
        if a.required:
            return Outcome(Pinned(in_force, wanted), tuple(events))
        await store.set_setting(conn, RETENTION, str(wanted), by=SETTINGS_ACTOR, now=now)
        events.append(retention_changed(wanted, in_force, SETTINGS_ACTOR))
        return Outcome(Pinned(wanted, None), tuple(events))

    try:
        pinned = await commands.run(step)
    except IntegrityError:
        # Another process starting on the same fresh database recorded them first.
        pinned = await commands.run(step)
    log.info("approvals", required=a.required, expiry_hours=a.expiry_hours)
    if pinned.retention_held is not None:
        log.warning(
            "retention change held until approved",
            in_force=pinned.retention_days, in_settings=pinned.retention_held,
            how="PUT /ops/v1/retention, then a second ops principal approves it",
        )
    return pinned


async def retention_in_force(db: Database, default: int) -> int:
    async with db.read() as conn:
        stored = await store.setting_in_force(conn, RETENTION)
    return default if stored is None else int(stored)
