"""Many-gateway benchmark: one control plane, 1-4 agents, 10,000 peers spread over them.

Measures, each beside its target:
1. propagation of one change (a tenant with one peer on every gateway suspended or
   reinstated) from the commit to every agent's long-poll answer, p50/p99 (p99 <= 100 ms);
2. a full first sync of 10,000 peers to a new agent: fetching the full desired state over
   HTTP plus applying it onto a fresh wireguard-go interface in a namespace, versus
   `wg syncconf` of the same peers onto another fresh one (<= 1.5x);
3. observation ingest at the control plane: session events per second into the outbox,
   in batches of 200 over 4 concurrent uploads (>= 10,000/s), and (no target) until the
   sequencer has moved them all into the log and the regulator index: an outbox filled
   faster than it drains is only a backlog.

The control plane runs in this process (`create_app`, real HTTP on 127.0.0.1, SQLite in a
temp dir; with --postgres, a fresh PostgreSQL database for each agent count). Agents are
the agent's own HTTP client (`gateway.agent.client.ControlPlane`) long-polling one gateway
each; peers are seeded with bulk SQL so the setup takes seconds, not the provisioning API's minutes.

    sudo .venv/bin/python -m bench.agents                     # 10,000 peers, 1 and 4 agents
    sudo .venv/bin/python -m bench.agents --peers 2000 --trials 20
    sudo .venv/bin/python -m bench.agents --postgres postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from sqlalchemy import func, insert, select, update

from bench.common import pg_database_async
from bench.dataplane import (
    GW_PRIVATE,
    SOCKET_DIR,
    Namespace,
    entered,
    load_note,
    timed_sh,
    unique,
    wg_config,
    wg_fresh_interface,
    wg_peer_count,
    write_private,
)
from gateway.agent import protocol
from gateway.agent.client import ControlPlane, ssl_context
from gateway.agent.feed import AgentFeed
from gateway.agent.store import AgentStore
from gateway.app import create_app
from gateway.http import appkeys
from gateway.keyfiles import create_keys
from gateway.settings import load_settings
from gateway.wireguard.backend import InterfaceSpec
from gateway.wireguard.keys import public_key_of, to_base64
from gateway.wireguard.reconciler import Reconciler
from gateway.wireguard.userspace import UserspaceBackend
from provisioning.gateways import NewGateway
from provisioning.ids import new_id
from provisioning.peers import NewPeer
from provisioning.schema import address_pools, addresses, gateways, peers, public_keys, tenants
from provisioning.tenants import NewTenant
from provisioning.tokens import Principal, Role

PROPAGATION_P99_LIMIT = 0.100
FIRST_SYNC_RATIO_LIMIT = 1.5
INGEST_LIMIT = 10_000.0
BATCH = protocol.MAX_BATCH_EVENTS


@dataclass
class Row:
    name: str
    value: str
    target: str
    passed: bool | None


@dataclass
class Bench:
    url: str
    app: web.Application
    rows: list[Row] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # gateway name -> agent token
    ids: dict[str, str] = field(default_factory=dict)  # gateway name -> id


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def seed(bench: Bench, tenant_id: str, gateway: str, count: int, pool: str) -> None:
    """`count` active peers on one gateway, written in bulk (keys, addresses, revision)."""
    db = bench.app[appkeys.DATABASE]
    net = ipaddress.ip_network(pool)
    now = datetime.now(UTC)
    gw_id = bench.ids[gateway]
    peer_rows, key_rows, address_rows = [], [], []
    for n in range(count):
        pid = new_id()
        key = to_base64(public_key_of(secrets.token_bytes(32)))
        peer_rows.append({"id": pid, "tenant_id": tenant_id, "name": f"p{n}", "public_key": key,
                          "preshared_key": to_base64(secrets.token_bytes(32)) if n % 3 == 0
                          else None, "status": "active", "created_at": now, "expires_at": None,
                          "revoked_at": None, "key_rotated_at": None, "gateway_id": gw_id,
                          "revision": 1})
        key_rows.append({"public_key": key, "peer_id": pid, "added_at": now, "retired_at": None})
        address_rows.append({"pool": pool, "offset": n + 2, "address": str(net[n + 2]),
                             "peer_id": pid, "released_at": None})
    async with db.write() as conn:
        for start in range(0, count, 2000):
            await conn.execute(insert(peers), peer_rows[start:start + 2000])
            await conn.execute(insert(public_keys), key_rows[start:start + 2000])
            await conn.execute(insert(addresses), address_rows[start:start + 2000])
        await conn.execute(update(address_pools).where(address_pools.c.cidr == pool)
                           .values(next_offset=count + 2))
        await conn.execute(update(gateways).where(gateways.c.id == gw_id).values(revision=2))


async def setup(bench: Bench, peers_total: int, agents: int) -> tuple[str, str]:
    commands = bench.app[appkeys.COMMANDS]
    names = ["sync", *(f"a{i}" for i in range(1, agents + 1))]
    for i, name in enumerate(names):
        gw, issued = await commands.register_gateway(
            NewGateway.parse({"name": name, "endpoint": f"{name}.bench:51820",
                              "pool": f"10.{64 + i}.0.0/18", "pool6": f"fd00:{64 + i}::/64"}),
            None, actor="bench")
        bench.ids[name], bench.tokens[name] = gw.id, issued.secret
    tenant = await commands.create_tenant(NewTenant.parse({
        "legal_name": "Bench Ltd", "registration_number": "B-1", "tax_id": "T", "country": "DE",
        "contact_email": "b@bench.test", "max_peers": 100_000}, default_max_peers=10),
        actor="bench")
    await commands.verify_tenant(tenant.id, evidence_reference="B", actor="bench")
    async with bench.app[appkeys.DATABASE].write() as conn:
        await conn.execute(update(tenants).where(tenants.c.id == tenant.id)
                           .values(max_peers=10 * peers_total))
    await seed(bench, tenant.id, "sync", peers_total, "10.64.0.0/18")
    for i in range(1, agents + 1):
        await seed(bench, tenant.id, f"a{i}", peers_total // agents, f"10.{64 + i}.0.0/18")
    small = await commands.create_tenant(NewTenant.parse({
        "legal_name": "Flip Ltd", "registration_number": "B-2", "tax_id": "T", "country": "DE",
        "contact_email": "f@bench.test"}, default_max_peers=10), actor="bench")
    await commands.verify_tenant(small.id, evidence_reference="B", actor="bench")
    who = Principal("bench", Role.TENANT, small.id)
    for i in range(1, agents + 1):
        await commands.provision_peer(who, NewPeer(f"flip{i}", None, False, None,
                                                   gateway_id=bench.ids[f"a{i}"]))
    return tenant.id, small.id


@dataclass
class Poller:
    client: ControlPlane
    revision: int

    async def next_change(self) -> float:
        doc = await self.client.state(self.revision, wait=30)
        self.revision = doc.revision
        return time.perf_counter()


async def propagation(bench: Bench, agents: int, small_tenant: str, trials: int) -> list[float]:
    commands = bench.app[appkeys.COMMANDS]
    pollers = []
    for i in range(1, agents + 1):
        c = ControlPlane(bench.url, bench.tokens[f"a{i}"], ssl_context(None))
        await c.whoami()
        pollers.append(Poller(c, (await c.state(0, wait=0)).revision))
    samples: list[float] = []
    try:
        for trial in range(trials):
            tasks = [asyncio.create_task(p.next_change()) for p in pollers]
            await asyncio.sleep(0.05)  # every poll is waiting before the change
            began = time.perf_counter()
            if trial % 2 == 0:
                await commands.suspend_tenant(small_tenant, reason="bench", actor="bench")
            else:
                await commands.reinstate_tenant(small_tenant, reason="bench", actor="bench")
            samples += [t - began for t in await asyncio.gather(*tasks)]
    finally:
        for p in pollers:
            await p.client.close()
    return samples


@contextlib.contextmanager
def executor_in_namespace() -> Iterator[None]:
    """While the loop's thread is in a namespace, give it a fresh default executor: the
    backend's link calls run on `asyncio.to_thread`, and the old pool's threads were born in
    the root namespace (the server's own worker calls started them), where the link is not."""
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(thread_name_prefix="bench-ns")  # threads start lazily, in ns
    loop.set_default_executor(pool)
    try:
        yield
    finally:
        loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix="bench-root"))
        pool.shutdown(wait=False)


async def first_sync(bench: Bench, ns: Namespace, tmp: Path, repeat: int) -> tuple[list[float],
                                                                                list[float]]:
    ours, theirs = [], []
    for _ in range(repeat):
        client = ControlPlane(bench.url, bench.tokens["sync"], ssl_context(None))
        await client.whoami()
        began = time.perf_counter()
        doc = await client.state(0, wait=0)
        store = AgentStore(tmp / unique("s"))
        feed = AgentFeed(store, on_queued=lambda: None)
        feed.apply(doc)
        fetched = time.perf_counter() - began
        await client.close()
        with entered(ns), executor_in_namespace():
            ifname = unique("vbo")
            backend = UserspaceBackend.managed(interface=ifname, socket_dir=SOCKET_DIR)
            wanted: list[list[Any]] = [[]]

            async def desired(holder: list[list[Any]] = wanted) -> list[Any]:
                return holder[0]

            reconciler = Reconciler(
                backend=backend, load_desired=desired,
                interface=InterfaceSpec(ifname, GW_PRIVATE, 41000, ("10.64.0.1/18",)))
            await reconciler.reconcile()  # the empty interface, as `wg` gets it below
            began = time.perf_counter()
            wanted[0] = list(await feed.desired_peers())
            await reconciler.reconcile()
            applied = time.perf_counter() - began
            assert wg_peer_count(ifname) == len(doc.peers)
            await backend.close()
            key = tmp / unique("k")
            write_private(key, to_base64(GW_PRIVATE))
            conf = tmp / unique("c")
            write_private(conf, wg_config(await feed.desired_peers()))
            wg = wg_fresh_interface(41001, key)
            try:
                theirs.append(await asyncio.to_thread(timed_sh, "wg", "syncconf", wg.ifname,
                                                      str(conf)))
                assert wg_peer_count(wg.ifname) == len(doc.peers)
            finally:
                wg.stop()
        ours.append(fetched + applied)
    return ours, theirs


async def ingest(bench: Bench, gateway: str, events: int,
                 concurrency: int = 4) -> tuple[float, float]:
    """Session events per second into the outbox (the uploads' own time), and into the log
    (until the sequencer, indexing included, has moved every one of them)."""
    db = bench.app[appkeys.DATABASE]
    async with db.read() as conn:
        keys = list((await conn.scalars(select(peers.c.public_key).where(
            peers.c.gateway_id == bench.ids[gateway]))).all())
    at = "2026-03-01T10:00:00Z"
    batches = [
        [{"type": "session.started", "public_key": keys[(b * BATCH + i) % len(keys)], "at": at,
          "endpoint": "203.0.113.9:40000", "first_handshake": at} for i in range(BATCH)]
        for b in range(events // BATCH)
    ]
    client = ControlPlane(bench.url, bench.tokens[gateway], ssl_context(None))
    await client.whoami()
    queue = list(enumerate(batches))

    async def worker() -> None:
        while queue:
            n, batch = queue.pop()
            await client.upload(f"bench-{n:06d}-{secrets.token_hex(4)}", batch)

    from gateway.audit.schema import outbox

    async with db.read() as conn:
        before = int(await conn.scalar(select(func.count()).select_from(outbox)) or 0)
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    await client.close()
    async with db.read() as conn:
        after = int(await conn.scalar(select(func.count()).select_from(outbox)) or 0)
    # The sequencer may already have moved rows into the log; count those too.
    written = len(batches) * BATCH
    assert after - before <= written
    while after > 0:
        await asyncio.sleep(0.01)
        async with db.read() as conn:
            after = int(await conn.scalar(select(func.count()).select_from(outbox)) or 0)
    sequenced = time.perf_counter() - began
    return written / elapsed, written / sequenced


async def run(args: argparse.Namespace, tmp: Path) -> list[Row]:
    rows: list[Row] = []
    for agents in args.agents:
        data = tmp / f"cp{agents}"
        data.mkdir()
        create_keys(data)
        # Each agent count gets an empty database: the gateways of one run would
        # otherwise still hold the address pools the next run registers.
        async with contextlib.AsyncExitStack() as stack:
            url = (await stack.enter_async_context(pg_database_async(args.postgres))
                   if args.postgres else f"sqlite+aiosqlite:///{data / 'vpngw.db'}")
            rows.extend(await run_one(args, tmp, data, url, agents))
    return rows


async def run_one(args: argparse.Namespace, tmp: Path, data: Path, url: str,
                  agents: int) -> list[Row]:
    """One control plane on `url` with `agents` agents: its propagation, and for the first
    agent count also ingest and the first sync."""
    rows: list[Row] = []
    settings = load_settings(data, environ={}).replace(
        database={"url": url},
        egress={"enabled": False}, server={"log_level": "warning"})
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    bench = Bench(f"http://127.0.0.1:{port}", app)
    try:
        _tenant, small = await setup(bench, args.peers, agents)
        samples = await propagation(bench, agents, small, args.trials)
        p50, p99 = pct(samples, 0.5), pct(samples, 0.99)
        rows.append(Row(f"propagation to {agents} agent(s), p50 / p99",
                        f"{p50 * 1000:.1f} / {p99 * 1000:.1f} ms", "p99 <= 100 ms",
                        p99 <= PROPAGATION_P99_LIMIT))
        if agents == args.agents[0]:
            rate, logged = await ingest(bench, "a1", args.events)
            rows.append(Row("observation ingest (batches of 200, 4 uploads)",
                            f"{rate:,.0f} events/s", ">= 10,000/s", rate >= INGEST_LIMIT))
            rows.append(Row("  ... and sequenced into the log (indexed)",
                            f"{logged:,.0f} events/s", "", None))
            if args.no_netns:
                rows.append(Row("first sync", "skipped (--no-netns)", "", None))
            else:
                ns = Namespace.create()
                try:
                    ours, theirs = await first_sync(bench, ns, tmp, args.repeat)
                finally:
                    ns.delete()
                o, t = statistics.median(ours), statistics.median(theirs)
                rows.append(Row(f"first sync of {args.peers:,} peers (fetch + apply)",
                                f"{o * 1000:.0f} ms vs wg syncconf {t * 1000:.0f} ms "
                                f"= {o / t:.2f}x", "<= 1.5x", o / t <= FIRST_SYNC_RATIO_LIMIT))
    finally:
        await runner.cleanup()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=10_000)
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="first-sync repetitions")
    parser.add_argument("--events", type=int, default=20_000, help="events uploaded for ingest")
    parser.add_argument("--postgres", metavar="ADMIN_URL",
                        help="run on PostgreSQL: a fresh database on this server for each "
                             "agent count (default: SQLite)")
    parser.add_argument("--no-netns", action="store_true", help="skip the first-sync apply")
    args = parser.parse_args()
    if not args.no_netns:
        missing = [t for t in ("ip", "wireguard-go", "wg") if shutil.which(t) is None]
        if os.geteuid() != 0 or missing:
            sys.exit("bench.agents needs root, ip, wireguard-go and wg (or --no-netns)")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    print(f"{args.peers:,} peers; {load_note()}")
    with tempfile.TemporaryDirectory(prefix="vbagents") as tmp:
        rows = asyncio.run(run(args, Path(tmp)))
    width = max(len(r.name) for r in rows)
    header = f"{'measurement':{width}}  {'result':40} {'target':14} verdict"
    print(f"\n{header}")
    print("-" * len(header))
    for r in rows:
        verdict = "" if r.passed is None else ("PASS" if r.passed else "MISS")
        print(f"{r.name:{width}}  {r.value:40} {r.target:14} {verdict}")
    print(load_note())


if __name__ == "__main__":
    main()
