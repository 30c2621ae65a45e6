"""Wiring for `vpngw agent`: the data plane of one gateway, fed by the control plane over
HTTP(S). Holds no database credentials and no signing key; survives the control plane
being away by serving its saved state and queueing observations on disk."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from gateway.agent import protocol
from gateway.agent.client import (
    ControlPlane,
    ControlPlaneUnavailable,
    Refused,
    check_url,
    ssl_context,
)
from gateway.agent.feed import AgentFeed
from gateway.agent.store import AgentStore, AgentStoreError
from gateway.dataplane.plane import DataPlane, egress_policy, interface_spec, make_backend
from gateway.egress.mapping import EgressMap
from gateway.egress.nft import Forwarding, Nft
from gateway.egress.plan import EgressPlan
from gateway.egress.sync import EgressSync
from gateway.egress.uplink import find_uplink
from gateway.logging import configure_logging
from gateway.settings import WireGuardSettings
from gateway.wireguard.backend import WireGuardBackend
from gateway.wireguard.keys import public_key_of, to_base64
from provisioning.addresses import Network

log = structlog.get_logger("vpngw.agent")


@dataclass(frozen=True)
class AgentOptions:
    control: str
    token: str
    data_dir: Path
    wireguard: WireGuardSettings
    ca_file: str | None = None
    listen_port: int | None = None
    poll_wait: int = 25
    status_interval: float = 10.0
    max_queued_events: int = 100_000
    max_backoff: float = 10.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class Agent:
    def __init__(
        self, options: AgentOptions, *, backend: WireGuardBackend | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.options = options
        self._clock = clock
        self.store = AgentStore(options.data_dir, max_queued_events=options.max_queued_events)
        self.client = ControlPlane(options.control, options.token, ssl_context(options.ca_file))
        self._queued = asyncio.Event()
        self.feed = AgentFeed(self.store, on_queued=self._queued.set)
        self._backend = backend
        self.plane: DataPlane | None = None
        self._statuses: dict[str, tuple[bool, str]] = {}
        self._report_now = asyncio.Event()

    def _backoff(self, failures: int) -> float:
        return float(min(0.5 * 2 ** max(failures - 1, 0), self.options.max_backoff))

    async def _first_state(self) -> None:
        """Saved state when there is one (works offline); else wait for the control plane."""
        saved = await asyncio.to_thread(self.store.load_state)
        if saved is not None:
            self.feed.apply(protocol.state_from_wire(saved))
            assert self.feed.state is not None
            self.client.gateway_id = self.feed.state.gateway.id
            log.info("serving saved desired state", revision=self.feed.revision,
                     peers=len(self.feed.state.peers))
            return
        failures = 0
        while True:
            try:
                await self.client.whoami()
                doc = await self.client.state(0, wait=0)
                break
            except (ControlPlaneUnavailable, Refused) as exc:
                failures += 1
                log.warning("waiting for the control plane (no saved state yet)",
                            error=str(exc), retry_in=self._backoff(failures))
                await asyncio.sleep(self._backoff(failures))
        self.feed.apply(doc)
        await asyncio.to_thread(self.store.save_state, self.feed.document())

    def _pools(self) -> list[Network]:
        import ipaddress

        assert self.feed.state is not None
        return [ipaddress.ip_network(p) for p in self.feed.state.gateway.pools]

    def _listen_port(self) -> int:
        assert self.feed.state is not None
        if self.options.listen_port is not None:
            return self.options.listen_port
        return int(self.feed.state.gateway.endpoint.rpartition(":")[2])

    async def _egress(self, pools: list[Network]) -> EgressSync | None:
        assert self.feed.state is not None
        fields = self.feed.state.gateway.egress
        if not fields:
            return None
        interface = str(fields.get("interface") or "")
        if not interface:
            uplink = await find_uplink()
            interface = uplink.interface if uplink else ""
        mapping = EgressMap.from_event({k: v for k, v in fields.items() if k != "interface"})
        plan = EgressPlan(egress=mapping, interface=interface)
        policy = egress_policy(plan, wireguard_interface=self.options.wireguard.interface,
                               pools=pools)
        return EgressSync(policy=policy, nft=Nft(), forwarding=Forwarding())

    async def run(self, stop: asyncio.Event) -> None:
        private_key = await asyncio.to_thread(self.store.private_key)
        self.public_key = to_base64(public_key_of(private_key))
        await self._first_state()
        ws = self.options.wireguard
        pools = self._pools()
        self.plane = DataPlane(
            backend=self._backend or make_backend(ws),
            interface=interface_spec(ws, private_key, pools, listen_port=self._listen_port()),
            source=self.feed,
            sink=self.feed,
            egress=await self._egress(pools),
            reconcile_interval=ws.reconcile_interval_seconds,
            collect_interval=ws.collect_interval_seconds,
            session_grace=timedelta(seconds=ws.session_grace_seconds),
            session_silence=timedelta(seconds=ws.session_silence_seconds),
            clock=self._clock,
            on_status=self._on_status,
            label=ws.backend,
        )
        await self.plane.start()
        tasks = [
            asyncio.create_task(self._poll(), name="agent-poll"),
            asyncio.create_task(self._upload(), name="agent-upload"),
            asyncio.create_task(self._report(), name="agent-status"),
        ]
        log.info("agent running", gateway_id=self.client.gateway_id, public_key=self.public_key,
                 interface=ws.interface, listen_port=self._listen_port())
        await stop.wait()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.plane.stop()
        await self.client.close()

    def _on_status(self, name: str, ok: bool, detail: str) -> None:
        if self._statuses.get(name) != (ok, detail):
            self._statuses[name] = (ok, detail)
            self._report_now.set()

    async def _poll(self) -> None:
        failures = 0
        while True:
            try:
                if not self.client.gateway_id:
                    await self.client.whoami()
                doc = await self.client.state(self.feed.revision, wait=self.options.poll_wait)
            except (ControlPlaneUnavailable, Refused) as exc:
                failures += 1
                log.warning("desired state not reachable; serving the saved state",
                            error=str(exc), retry_in=self._backoff(failures))
                await asyncio.sleep(self._backoff(failures))
                continue
            if failures:
                log.info("control plane reachable again", revision=self.feed.revision)
                self._queued.set()  # replay whatever queued meanwhile
            failures = 0
            before = self.feed.revision
            if self.feed.apply(doc) or doc.revision != before:
                await asyncio.to_thread(self.store.save_state, self.feed.document())
                assert self.plane is not None
                self.plane.wake()

    async def _upload(self) -> None:
        failures = 0
        while True:
            batches = await asyncio.to_thread(self.store.batches)
            if not batches:
                self._queued.clear()
                await self._queued.wait()
                continue
            for batch in batches:
                try:
                    await self.client.upload(batch.batch_id, batch.events)
                except ControlPlaneUnavailable as exc:
                    failures += 1
                    log.info("observations queued until the control plane returns",
                             queued=self.store.queued_events, error=str(exc))
                    await asyncio.sleep(self._backoff(failures))
                    break
                except Refused as exc:
                    if exc.status in (401, 408, 429) or not self.client.gateway_id:
                        failures += 1
                        log.error("observation upload refused; retrying", error=str(exc))
                        await asyncio.sleep(self._backoff(failures))
                        break
                    # A retry cannot fix it: keep it aside for the operator, go on.
                    log.error("observation batch refused; set aside", batch_id=batch.batch_id,
                              error=str(exc))
                    await asyncio.to_thread(self.store.set_aside, batch)
                    continue
                failures = 0
                await asyncio.to_thread(self.store.acknowledged, batch)

    async def _report(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.status_interval):
                    await self._report_now.wait()
            self._report_now.clear()
            statuses = self.feed.take_statuses()
            ok = all(s[0] for s in self._statuses.values()) and not self.store.dropped
            detail = "; ".join(d for _n, (_ok, d) in sorted(self._statuses.items()))
            if self.store.dropped:
                detail += f"; {self.store.dropped} observation(s) dropped: queue full"
            interface = {"public_key": self.public_key, "listen_port": self._listen_port(),
                         "ok": ok, "detail": detail[:500]}
            try:
                if not self.client.gateway_id:
                    await self.client.whoami()
                wire = [protocol.status_to_wire(s) for s in statuses]
                chunks = protocol.chunks(wire, protocol.MAX_STATUS_PEERS) or [[]]
                for chunk in chunks:
                    await self.client.status(interface, list(chunk))
                self.feed.sent(statuses)
            except (ControlPlaneUnavailable, Refused) as exc:
                self.feed.unsent(statuses)
                log.debug("status not reported", error=str(exc))


# --- CLI ----------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agent = sub.add_parser(
        "agent", help="run the data plane of one gateway, fed by a control plane over HTTPS"
    )
    agent.add_argument("--control", required=True, help="control plane URL, https://host:port")
    agent.add_argument("--token", default=os.environ.get("VPNGW_AGENT_TOKEN"),
                       help="agent token from `vpngw gateway add` (or VPNGW_AGENT_TOKEN)")
    agent.add_argument("--data-dir", required=True,
                       help="interface key, saved desired state and observation queue")
    agent.add_argument("--wireguard", choices=["userspace", "kernel"], default="kernel")
    agent.add_argument("--interface", default="vpngw0", help="WireGuard interface name")
    agent.add_argument("--listen-port", type=int,
                       help="UDP port (default: the port of the gateway's public endpoint)")
    agent.add_argument("--ca-file", help="PEM CA bundle to verify the control plane with "
                       "(default: the system CAs)")
    agent.add_argument("--allow-http", action="store_true",
                       help="allow plain http:// to a non-loopback control plane")
    agent.add_argument("--wireguard-go", default="wireguard-go")
    agent.add_argument("--max-queued-events", type=int, default=100_000,
                       help="observations kept on disk while the control plane is away; "
                       "beyond it new ones are dropped and reported")
    agent.add_argument("--log-level", default="info")
    agent.add_argument("--collect-interval", type=float, default=10.0, help=argparse.SUPPRESS)
    agent.add_argument("--session-silence", type=int, default=180, metavar="SECONDS",
                       help="handshake age at which a silent session counts as ended, before "
                       "--session-grace (default 180, WireGuard's REJECT_AFTER_TIME; shorter "
                       "ends live sessions too: for tests only)")
    agent.add_argument("--session-grace", type=int, default=30, metavar="SECONDS",
                       help="added to --session-silence (default 30)")


def options_from(args: argparse.Namespace) -> AgentOptions:
    if not args.token:
        raise ValueError("give --token (or set VPNGW_AGENT_TOKEN) from `vpngw gateway add`")
    ws = replace(WireGuardSettings(), backend=args.wireguard, interface=args.interface,
                 wireguard_go=args.wireguard_go, collect_interval_seconds=args.collect_interval,
                 session_grace_seconds=args.session_grace,
                 session_silence_seconds=args.session_silence)
    if not 1 <= args.session_silence <= 86400 or not 0 <= args.session_grace <= 86400:
        raise ValueError("--session-silence must be 1-86400 seconds (default 180, WireGuard's "
                         "REJECT_AFTER_TIME) and --session-grace 0-86400")
    return AgentOptions(
        control=check_url(args.control, allow_http=args.allow_http), token=args.token,
        data_dir=Path(args.data_dir), wireguard=ws, ca_file=args.ca_file,
        listen_port=args.listen_port, max_queued_events=args.max_queued_events,
    )


def run(args: argparse.Namespace) -> int:
    configure_logging(level=args.log_level, fmt="auto")
    try:
        options = options_from(args)
        agent = Agent(options)
    except (ValueError, AgentStoreError, OSError) as exc:
        print(f"vpngw agent: {exc}", file=sys.stderr)
        return 1

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await agent.run(stop)

    asyncio.run(main())
    return 0
