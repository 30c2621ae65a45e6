"""Typed application state keys, all in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.approvals.service import Approvals
    from gateway.audit.log import AuditLog
    from gateway.audit.reaffirm import FactProvider
    from gateway.audit.sequencer import Sequencer
    from gateway.audit.witnessing import Witnessing
    from gateway.clock import Clock
    from gateway.commands import Commands
    from gateway.dataplane.plane import DataPlane
    from gateway.db import Database
    from gateway.egress.mapping import EgressMap
    from gateway.egress.plan import EgressPlan
    from gateway.keyfiles import GatewayKeys
    from gateway.metrics import Metrics
    from gateway.regulator.refusals import RefusalRecorder
    from gateway.regulator.service import RegulatorService
    from gateway.runtime import Runtime
    from gateway.settings import Settings
    from gateway.statewatch import StateWatch

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
DATABASE: web.AppKey[Database] = web.AppKey("database")
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
KEYS: web.AppKey[GatewayKeys] = web.AppKey("keys")
COMMANDS: web.AppKey[Commands] = web.AppKey("commands")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime")
AUDIT_LOG: web.AppKey[AuditLog] = web.AppKey("audit_log")
SEQUENCER: web.AppKey[Sequencer] = web.AppKey("sequencer")
DATAPLANE: web.AppKey[DataPlane] = web.AppKey("dataplane")
# The egress mapping in force (None when this gateway carries no traffic).
EGRESS: web.AppKey[EgressPlan | None] = web.AppKey("egress")
WITNESSING: web.AppKey[Witnessing] = web.AppKey("witnessing")
# Wakes agent long-polls when a gateway's desired state changes.
STATE_WATCH: web.AppKey[StateWatch] = web.AppKey("state_watch")
REFUSALS: web.AppKey[RefusalRecorder] = web.AppKey("regulator_refusals")
# Answers regulator queries (built once the witnesses are set up).
REGULATOR: web.AppKey[RegulatorService] = web.AppKey("regulator")
# What retention restates before erasing (gateway.audit.reaffirm); extend to add a kind.
FACT_PROVIDERS: web.AppKey[tuple[FactProvider, ...]] = web.AppKey("fact_providers")
# Two-person control (gateway.approvals).
APPROVALS: web.AppKey[Approvals] = web.AppKey("approvals")
# Egress settings found changed at start and held until approved (None: nothing held).
EGRESS_HELD: web.AppKey[EgressMap | None] = web.AppKey("egress_held")
