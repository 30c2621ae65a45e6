"""The aiohttp application factory: one create_app for `vpngw serve` and every test."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version

import aiohttp
import structlog
from aiohttp import web
from sqlalchemy.engine import make_url

from gateway.accounts import Accounts
from gateway.api import (
    agent,
    approvals,
    audit,
    gateways,
    ops,
    public,
    regulator,
    schemas,
    tenant,
    transparency,
)
from gateway.approvals.pinned import pin_at_start
from gateway.approvals.service import Approvals
from gateway.audit.log import AuditLog, Indexer
from gateway.audit.note import Ed25519NoteSigner
from gateway.audit.reaffirm import FactProvider, default_providers
from gateway.audit.retention import retention_job
from gateway.audit.sequencer import Sequencer
from gateway.audit.witnessing import AiohttpTransport, Witnessing, parse_witness_entry
from gateway.clock import Clock, SystemClock
from gateway.commands import GATEWAY_CHANNEL, Commands
from gateway.dataplane.local import LocalFeed
from gateway.dataplane.plane import DataPlane, egress_policy, interface_spec, make_backend
from gateway.db import Database
from gateway.egress.nft import Forwarding, Nft
from gateway.egress.plan import EgressPlan, plan_egress
from gateway.egress.store import egress_in_force, logged_maps
from gateway.egress.sync import EgressSync
from gateway.http import appkeys
from gateway.http.middlewares import request_context, security_headers
from gateway.http.openapi import build_openapi
from gateway.http.routes import Route, mount
from gateway.keyfiles import load_keys
from gateway.metrics import Metrics
from gateway.regulator import registry
from gateway.regulator.index import index_entries
from gateway.regulator.refusal_windows import RefusalWindows
from gateway.regulator.refusals import RefusalRecorder
from gateway.regulator.request import QUERY_FIELDS
from gateway.regulator.service import RegulatorService
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.statewatch import StateWatch, listen_forever
from gateway.web.routes import mount_pages
from gateway.wireguard.backend import WireGuardBackend
from provisioning.accounts.passwords import Passwords

log = structlog.get_logger("vpngw.app")


def all_routes() -> list[Route]:
    return [
        *public.ROUTES,
        *ops.ROUTES,
        *gateways.ROUTES,
        *audit.ROUTES,
        *tenant.ROUTES,
        *regulator.ROUTES,
        *approvals.ROUTES,
        *transparency.ROUTES,
        *agent.ROUTES,
    ]


def _version() -> str:
    try:
        return version("vpngw")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.0.0"


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    database: Database | None = None,
    indexers: Sequence[Indexer] = (),
    backend: WireGuardBackend | None = None,
    egress: EgressPlan | None = None,
    passwords: Passwords | None = None,
    fact_providers: Sequence[FactProvider] = (),
) -> web.Application:
    """`egress`: an already resolved plan (`vpngw serve` checks it before starting);
    without one, egress settings are resolved at start when `egress.enabled`.
    `indexers` and `fact_providers` extend the regulator index and the facts retention
    restates (gateway.audit.reaffirm) with further kinds of event."""
    app = web.Application(
        middlewares=[request_context], client_max_size=settings.server.max_body_bytes
    )
    app.on_response_prepare.append(security_headers)
    clock = clock or SystemClock()
    db = database or Database.for_data_dir(settings.database_url, settings.data_dir,
                                           pool_size=settings.database.pool_size)
    app[appkeys.SETTINGS] = settings
    app[appkeys.CLOCK] = clock
    app[appkeys.DATABASE] = db
    app[appkeys.METRICS] = Metrics()
    app[appkeys.RUNTIME] = Runtime()
    app[appkeys.KEYS] = load_keys(settings.data_dir)
    keys = app[appkeys.KEYS]
    audit_log = AuditLog(
        db=db,
        signer=Ed25519NoteSigner(settings.audit.origin, keys.log),
        origin=settings.audit.origin,
        clock=clock,
        indexers=[index_entries, *indexers],
    )
    app[appkeys.AUDIT_LOG] = audit_log
    sequencer = Sequencer(
        log=audit_log,
        batch=settings.audit.sequencer_batch,
        interval=settings.audit.sequencer_interval_seconds,
        checkpoint_seconds=settings.audit.checkpoint_seconds,
    )
    app[appkeys.SEQUENCER] = sequencer
    app[appkeys.FACT_PROVIDERS] = (
        *default_providers(settings.network.gateway_id), registry.keys_in_force, egress_in_force,
        *fact_providers
    )
    commands = Commands(
        db=db, clock=clock, settings=settings, on_commit=sequencer.wake,
        gateway_public_key=keys.wireguard_public,
    )
    app[appkeys.COMMANDS] = commands
    app[appkeys.APPROVALS] = Approvals(
        commands=commands, required=settings.approvals.required,
        expiry_hours=settings.approvals.expiry_hours,
    )
    app[appkeys.EGRESS_HELD] = None
    app[appkeys.REFUSALS] = RefusalRecorder(
        admit=RefusalWindows(
            db=db, clock=clock.now, per_minute=settings.regulator.refusal_log_per_minute
        ).admit,
        is_registered=lambda keyid: _is_registered(db, keyid),
        record=commands.record,
        count=lambda labels: app[appkeys.METRICS].inc_labelled("regulator_refusals_total", labels),
    )
    watch = StateWatch()
    app[appkeys.STATE_WATCH] = watch
    app[appkeys.COMMANDS].set_on_gateways(watch.changed)
    routes = all_routes()
    mount(app, routes)
    mount_pages(app, accounts=Accounts(
        db=db, clock=clock, passwords=passwords or Passwords(), on_commit=sequencer.wake
    ))
    app[public.OPENAPI] = build_openapi(
        routes,
        version=_version(),
        schemas=schemas.components(query_fields=QUERY_FIELDS, keyid=registry.KEYID),
        signature_checks=regulator.SIGNATURE_CHECKS,
    )
    app.cleanup_ctx.append(_database_ctx)
    app.cleanup_ctx.append(_sequencer_ctx)
    app.cleanup_ctx.append(_sensitive_settings_ctx)
    app.cleanup_ctx.append(witnessing_ctx(settings, audit_log))
    app.cleanup_ctx.append(_state_listener_ctx)
    on_this_host = backend is not None or settings.wireguard.backend != "off"
    app.cleanup_ctx.append(egress_ctx(egress, on_this_host=on_this_host))
    app.cleanup_ctx.append(dataplane_ctx(backend))
    app.cleanup_ctx.append(_periodic_ctx("expiry", _expire_peers, interval=5.0))
    app.cleanup_ctx.append(_periodic_ctx("retention", retention_job,
                                         interval=settings.audit.retention_interval_seconds))
    app.cleanup_ctx.append(_periodic_ctx("approvals", _expire_approvals, interval=30.0))
    return app


async def _is_registered(db: Database, keyid: str) -> bool:
    async with db.read() as conn:
        return await registry.is_registered(conn, keyid)


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    db = app[appkeys.DATABASE]
    runtime = app[appkeys.RUNTIME]
    clock = app[appkeys.CLOCK]
    await db.migrate()
    await app[appkeys.COMMANDS].ensure_pools()
    runtime.set("database", ok=True, detail="migrated", now=clock.now())
    yield
    await db.dispose()


async def _sequencer_ctx(app: web.Application) -> AsyncIterator[None]:
    sequencer = app[appkeys.SEQUENCER]
    runtime, clock = app[appkeys.RUNTIME], app[appkeys.CLOCK]
    sequencer.on_status = lambda ok, detail: runtime.set(
        "sequencer", ok=ok, detail=detail, now=clock.now()
    )
    await sequencer.drain()
    runtime.set("sequencer", ok=True, detail="log up to date", now=clock.now())
    task = asyncio.create_task(sequencer.run(), name="sequencer")
    yield
    sequencer.stop()
    await task
    # Whatever committed before shutdown still goes into the log now.
    await sequencer.drain()


def witnessing_ctx(
    settings: Settings, audit_log: AuditLog
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Submit each new checkpoint to the configured witnesses, in the background."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        runtime, clock, metrics = app[appkeys.RUNTIME], app[appkeys.CLOCK], app[appkeys.METRICS]
        endpoints = [parse_witness_entry(e) for e in settings.witness.witnesses]
        timeout = aiohttp.ClientTimeout(total=settings.witness.timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            witnessing = Witnessing(
                log=audit_log, db=app[appkeys.DATABASE], witnesses=endpoints,
                transport=AiohttpTransport(session), clock=clock,
                answer_wait=settings.witness.answer_wait_seconds,
            )
            app[appkeys.WITNESSING] = witnessing
            app[appkeys.REGULATOR] = RegulatorService(
                db=app[appkeys.DATABASE], audit_log=audit_log, sequencer=app[appkeys.SEQUENCER],
                witnessing=witnessing, clock=clock, settings=settings.regulator,
            )
            for status in witnessing.statuses:
                label = status.endpoint.label
                metrics.gauges[f'witness_lag_entries{{witness="{label}"}}'] = (
                    functools.partial(witnessing.lag_gauge, status))
            if endpoints:
                runtime.informational["witnesses"] = witnessing.report
            stop = asyncio.Event()

            async def loop() -> None:
                while not stop.is_set():
                    try:
                        await witnessing.catch_up()
                    except Exception:
                        log.exception("witness round failed")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(),
                                               timeout=settings.witness.interval_seconds)

            task = asyncio.create_task(loop(), name="witnessing") if endpoints else None
            yield
            stop.set()
            if task is not None:
                await task

    return ctx


async def _state_listener_ctx(app: web.Application) -> AsyncIterator[None]:
    """On PostgreSQL, commits of other control-plane processes wake this one's long-polls."""
    db = app[appkeys.DATABASE]
    if db.is_sqlite:  # one process: Commands wakes the long-polls itself
        yield
        return
    dsn = make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)
    task = asyncio.create_task(
        listen_forever(dsn, GATEWAY_CHANNEL, app[appkeys.STATE_WATCH]), name="state-listener"
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def egress_ctx(
    plan: EgressPlan | None, *, on_this_host: bool
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Resolve the egress mapping and log it (`egress.configured`) before anything applies it."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings, runtime, clock = app[appkeys.SETTINGS], app[appkeys.RUNTIME], app[appkeys.CLOCK]
        resolved = plan or await plan_egress(settings, on_this_host=on_this_host)
        if resolved is not None and settings.approvals.required:
            resolved = await _hold_changed_egress(app, resolved)
        app[appkeys.EGRESS] = resolved
        if resolved is None:
            runtime.set("egress", ok=True, detail="off: clients reach the gateway only",
                        now=clock.now())
            yield
            return
        changed = await app[appkeys.COMMANDS].configure_egress(resolved.egress, actor="system")
        # In the log, not just the outbox, before the data plane applies it.
        await app[appkeys.SEQUENCER].drain()
        e = resolved.egress
        log.info("egress configured", logged=changed, interface=resolved.interface,
                 addresses=[str(a) for a in e.addresses], block_size=e.block_size,
                 capacity=e.capacity)
        gateway = settings.network.gateway_id
        app[appkeys.METRICS].gauges[f'egress_capacity_blocks{{gateway="{gateway}"}}'] = (
            lambda: float(e.capacity)
        )
        if not on_this_host:
            runtime.set("egress", ok=True, detail="mapping logged; applied by the gateway host",
                        now=clock.now())
        yield

    return ctx


async def _hold_changed_egress(app: web.Application, planned: EgressPlan) -> EgressPlan:
    """With approvals required, changed egress settings wait for a second principal: the
    mapping last logged stays in force and the new one is held (POST
    /ops/v1/egress/change-requests asks for it). A first start has nothing to hold."""
    async with app[appkeys.DATABASE].read() as conn:
        logged = (await logged_maps(conn, [planned.egress.gateway_id])).get(
            planned.egress.gateway_id)
    if logged is None or logged.event_fields() == planned.egress.event_fields():
        return planned
    app[appkeys.EGRESS_HELD] = planned.egress
    log.warning("egress settings change held until approved",
                how="POST /ops/v1/egress/change-requests, then a second ops principal approves "
                "it; it applies at the next start")
    return EgressPlan(egress=logged, interface=planned.interface)


def dataplane_ctx(
    backend: WireGuardBackend | None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The data plane of the default gateway, fed in-process from this database."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings, runtime, clock = app[appkeys.SETTINGS], app[appkeys.RUNTIME], app[appkeys.CLOCK]
        if settings.wireguard.backend == "off" and backend is None:
            runtime.set("wireguard", ok=True, detail="off (API only)", now=clock.now())
            yield
            return
        ws = settings.wireguard
        plan = app[appkeys.EGRESS]
        egress = None
        if plan is not None:
            policy = egress_policy(
                plan, wireguard_interface=ws.interface, pools=settings.pool_networks
            )
            egress = EgressSync(
                policy=policy,
                nft=Nft(),
                forwarding=Forwarding(),
                full_check_seconds=ws.reconcile_interval_seconds,
            )
            _egress_gauges(app, egress)
        commands = app[appkeys.COMMANDS]
        feed = LocalFeed(
            db=app[appkeys.DATABASE],
            clock=clock.now,
            record=commands.record,
            gateway_id=settings.network.gateway_id,
        )
        plane = DataPlane(
            backend=backend or make_backend(ws),
            interface=interface_spec(
                ws, app[appkeys.KEYS].wireguard_private_raw, settings.pool_networks
            ),
            source=feed,
            sink=feed,
            egress=egress,
            reconcile_interval=ws.reconcile_interval_seconds,
            collect_interval=ws.collect_interval_seconds,
            session_grace=timedelta(seconds=ws.session_grace_seconds),
            session_silence=timedelta(seconds=ws.session_silence_seconds),
            clock=clock.now,
            on_status=lambda name, ok, detail: runtime.set(
                name, ok=ok, detail=detail, now=clock.now()
            ),
            label=ws.backend,
        )
        app[appkeys.DATAPLANE] = plane
        sequencer = app[appkeys.SEQUENCER]

        def wake_all() -> None:
            sequencer.wake()
            plane.wake()

        commands.set_on_commit(wake_all)
        # The interface is configured before /readyz says ready.
        await plane.start()
        yield
        await plane.stop(remove_egress=settings.egress.remove_on_stop)

    return ctx


def _egress_gauges(app: web.Application, egress: EgressSync) -> None:
    gateway = app[appkeys.SETTINGS].network.gateway_id
    gauges = app[appkeys.METRICS].gauges
    gauges[f'egress_peers_mapped{{gateway="{gateway}"}}'] = lambda: float(
        egress.status.peers_mapped
    )
    gauges[f'egress_blocks_free{{gateway="{gateway}"}}'] = lambda: float(egress.status.blocks_free)


async def _sensitive_settings_ctx(app: web.Application) -> AsyncIterator[None]:
    """Log whether approvals are required and settle the retention period in force."""
    await pin_at_start(app[appkeys.COMMANDS], app[appkeys.SETTINGS])
    yield


async def _expire_approvals(app: web.Application) -> None:
    await app[appkeys.APPROVALS].expire_due()


async def _expire_peers(app: web.Application) -> None:
    await app[appkeys.COMMANDS].expire_due_peers()


def _periodic_ctx(
    name: str, job: Callable[[web.Application], Awaitable[None]], *, interval: float
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A background loop that survives its own failures and stops with the app."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()

        async def loop() -> None:
            while not stop.is_set():
                try:
                    await job(app)
                except Exception:
                    log.exception("background job failed", job=name)
                # Stop only between runs so no transaction is cut in half.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)

        task = asyncio.create_task(loop(), name=name)
        yield
        stop.set()
        await task

    return ctx
