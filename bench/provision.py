"""Provisioning benchmark: `POST /v1/peers` throughput and latency, page latency, server RSS.

Starts the real server (`vpngw init` then `vpngw serve`, subprocesses on a free loopback
port with a temp data dir) on SQLite and, when reachable, on a fresh PostgreSQL database;
onboards one verified tenant over HTTP with the ops token from `init --json`; then

1. provisions --peers peers with --concurrency concurrent clients (one aiohttp session,
   connector limit = concurrency, client-side public keys generated before timing);
2. times `GET /v1/peers?limit=100` for the first page and for a deep page (`after` = the
   id at 90 % of the tenant's peers), one request in flight;
3. reads the server's RSS once N peers exist (and its peak during the run).

    .venv/bin/python -m bench.provision                       # 100,000 peers, both databases
    .venv/bin/python -m bench.provision --peers 5000          # quick run
    .venv/bin/python -m bench.provision --no-postgres --profile /tmp/prof   # + py-spy
    .venv/bin/python -m bench.provision --no-sqlite --processes 2   # two API processes

Targets (2-core machine): >= 3,000 peers/s on SQLite with p99 <= 50 ms, RSS <= 300 MiB at
100,000 peers; on PostgreSQL >= 2,000 peers/s with two API processes, p99 <= 50 ms. With
--processes N on PostgreSQL, N `vpngw serve` share the data dir and database and the
clients take them in turn; server CPU is their sum, RSS the first one's. It prints tables;
it is not a test and fails nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import psutil
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench.common import (
    DEFAULT_PG_ADMIN,
    RssSampler,
    Server,
    free_port,
    machine_note,
    percentile,
    pg_database,
    pg_reachable,
    postgres_cpu_seconds,
    print_profile,
    print_table,
    process_cpu_seconds,
    profile_split,
    run,
)

DEFAULT_POOLS = ("10.64.0.0/10", "fd00:64::/64")
TARGET_RATE, TARGET_P99_MS, TARGET_RSS_MB = 3000.0, 50.0, 300.0
PG_TARGET_RATE, PG_TARGET_PROCESSES = 2000.0, 2  # PostgreSQL: with two API processes
TENANT = {"legal_name": "Bench Bank Ltd", "registration_number": "BENCH-1", "tax_id": "NTN-B1",
          "country": "PK", "contact_email": "it@bench.example"}


@dataclass
class Result:
    backend: str
    processes: int = 1
    peers: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    # (peers/s, p50, p99) for each tenth of the run, to show any slowdown as the table grows
    deciles: list[tuple[float, float, float]] = field(default_factory=list)
    first_page: list[float] = field(default_factory=list)
    deep_page: list[float] = field(default_factory=list)
    rss_at_n: float = 0.0
    rss_peak: float = 0.0
    server_cpu: float = 0.0
    db_cpu: float = 0.0  # PostgreSQL's own processes (SQLite runs inside the server)
    client_cpu: float = 0.0
    host_cpu_pct: float = 0.0
    backlog: int = 0
    drain_seconds: float = 0.0
    error_sample: str = ""


def client_keys(n: int) -> list[bytes]:
    """Request bodies with real client-side X25519 public keys (made before timing)."""
    bodies = []
    for i in range(n):
        raw = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        key = base64.b64encode(raw).decode("ascii")
        bodies.append(json.dumps({"name": f"bench-{i}", "public_key": key}).encode())
    return bodies


async def _expect(resp: aiohttp.ClientResponse, status: int) -> Any:
    body = await resp.text()
    if resp.status != status:
        raise RuntimeError(f"{resp.method} {resp.url.path}: {resp.status} {body[:300]}")
    return json.loads(body)


async def onboard(session: aiohttp.ClientSession, ops_token: str, max_peers: int) -> str:
    """A verified tenant with room for max_peers, and a tenant token for it."""
    ops = {"Authorization": f"Bearer {ops_token}"}
    async with session.post("/ops/v1/tenants", json={**TENANT, "max_peers": max_peers},
                            headers=ops) as resp:
        tenant = await _expect(resp, 201)
    async with session.post(f"/ops/v1/tenants/{tenant['id']}/verification",
                            json={"evidence_reference": "BENCH-KYC-1"}, headers=ops) as resp:
        await _expect(resp, 200)
    async with session.post(f"/ops/v1/tenants/{tenant['id']}/tokens", headers=ops) as resp:
        return str((await _expect(resp, 201))["token"])


async def provision(session: aiohttp.ClientSession, token: str, bodies: list[bytes],
                    concurrency: int, result: Result, urls: list[str]) -> list[str]:
    """`urls`: the servers' /v1/peers, taken in turn by the clients (one each)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    n = len(bodies)
    latencies = [0.0] * n
    done_at = [0.0] * n
    ok = [False] * n
    ids: list[str] = []
    next_index = 0
    progress_every = max(1, n // 10)

    async def worker(url: str) -> None:
        nonlocal next_index
        while next_index < n:
            i = next_index
            next_index += 1
            started = time.perf_counter()
            async with session.post(url, data=bodies[i], headers=headers) as resp:
                body = await resp.read()
                status, location = resp.status, resp.headers.get("Location", "")
            finished = time.perf_counter()
            latencies[i], done_at[i] = finished - started, finished
            if status == 201:
                ok[i] = True
                ids.append(location.rsplit("/", 1)[-1])
            else:
                result.errors += 1
                result.error_sample = result.error_sample or f"{status} {body[:200]!r}"
            if (i + 1) % progress_every == 0:
                print(f"  {result.backend}: {i + 1:,}/{n:,} sent", file=sys.stderr, flush=True)

    start = time.perf_counter()
    await asyncio.gather(*(worker(urls[k % len(urls)]) for k in range(concurrency)))
    result.seconds = time.perf_counter() - start
    result.peers = sum(ok)
    result.latencies = [lat for lat, good in zip(latencies, ok, strict=True) if good]
    # Tenths by completion order.
    order = sorted(range(n), key=done_at.__getitem__)
    previous = start
    for k in range(10):
        chunk = order[k * n // 10:(k + 1) * n // 10]
        if not chunk:
            continue
        end = done_at[chunk[-1]]
        lat = [latencies[i] * 1000 for i in chunk if ok[i]]
        rate = sum(ok[i] for i in chunk) / max(end - previous, 1e-9)
        result.deciles.append((rate, percentile(lat, 50), percentile(lat, 99)))
        previous = end
    return ids


async def page_latency(session: aiohttp.ClientSession, token: str, samples: int,
                       after: str | None) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    params = {"limit": "100", **({"after": after} if after else {})}
    found: list[float] = []
    for _ in range(samples):
        started = time.perf_counter()
        async with session.get("/v1/peers", params=params, headers=headers) as resp:
            doc = await _expect(resp, 200)
        found.append(time.perf_counter() - started)
        if len(doc["items"]) != 100:
            raise RuntimeError(f"page had {len(doc['items'])} items, expected 100")
    return found


async def outbox_rows(server: Server, database_url: str | None) -> int:
    """Events committed but not yet sequenced into the audit log (read straight from the DB)."""
    if database_url is None:
        uri = f"file:{server.data_dir / 'vpngw.db'}?mode=ro"
        with sqlite3.connect(uri, uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""), timeout=5)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM outbox"))
    finally:
        await conn.close()


async def wait_drained(server: Server, database_url: str | None, limit: float = 300) -> float:
    """Seconds until the sequencer has emptied the outbox (polled, at most `limit`)."""
    started = time.perf_counter()
    for _ in range(int(limit / 0.2)):
        if not await outbox_rows(server, database_url):
            break
        await asyncio.sleep(0.2)
    return time.perf_counter() - started


async def drive(server: Server, args: argparse.Namespace, bodies: list[bytes],
                result: Result, database_url: str | None,
                replicas: tuple[Server, ...] = ()) -> None:
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    urls = [f"{s.base_url}/v1/peers" for s in (server, *replicas)]

    def cpu_seconds() -> float:
        return sum(s.cpu_seconds() for s in (server, *replicas))

    async with aiohttp.ClientSession(server.base_url, connector=connector) as session:
        token = await onboard(session, server.ops_token, max_peers=min(len(bodies) + 10, 1_000_000))
        profile = None
        if args.profile:
            profile = Path(args.profile) / f"provision-{result.backend}.raw"
            if not server.start_profile(profile):
                print("  py-spy is not installed: no profile", file=sys.stderr)
                profile = None
        cpu_before, client_before = cpu_seconds(), time.process_time()
        db_before = postgres_cpu_seconds() if database_url else 0.0
        psutil.cpu_percent()  # starts the host-wide measurement interval
        with RssSampler(server) as rss:
            ids = await provision(session, token, bodies, args.concurrency, result, urls)
            result.server_cpu = cpu_seconds() - cpu_before
            result.db_cpu = postgres_cpu_seconds() - db_before if database_url else 0.0
            result.client_cpu = time.process_time() - client_before
            # Busy share of all CPUs: shows when something besides this benchmark ran.
            result.host_cpu_pct = psutil.cpu_percent()
            result.rss_at_n = server.rss_mb()
            server.stop_profile()
            result.backlog = await outbox_rows(server, database_url)
            if result.backlog:
                result.drain_seconds = await wait_drained(server, database_url)
            if len(ids) >= 200:
                ids.sort()
                result.first_page = await page_latency(session, token, args.page_samples, None)
                # Deep in the list, with a full page after it whatever the size.
                deep = min(int(len(ids) * 0.9), len(ids) - 101)
                result.deep_page = await page_latency(session, token, args.page_samples,
                                                      ids[deep])
        result.rss_peak = rss.peak
    if profile is not None and profile.exists():
        print_profile(profile, top=args.top)
        print_split(profile, result)


# Where the server's time goes, coarsely: a sample counts for the first marker in its stack.
SPLIT_RULES = (
    ("WAL checkpoints (worker thread)", "_Checkpointer._checkpoint"),
    ("audit log sequencing (outbox -> Merkle log)", "Sequencer._passes"),
    ("commit", "_InlineSQLite.commit"),
    ("SQL statements (driver)", "provisioning/driver.py"),
    ("provisioning logic (quota, keys, addresses)", "provisioning/"),
    ("audit events into the outbox", "gateway/audit/"),
    ("vpngw HTTP layer (middleware, auth, body, handler)", "gateway/http/"),
    ("vpngw HTTP layer (middleware, auth, body, handler)", "gateway/api/"),
    ("group commit and commands", "gateway/groupcommit.py"),
    ("group commit and commands", "gateway/commands.py"),
    ("aiohttp (parse requests, write responses)", "aiohttp/"),
    ("event loop and sockets", "asyncio/"),
)


def print_split(profile: Path, result: Result) -> None:
    per_peer = 1e6 * result.server_cpu / result.peers if result.peers else 0.0
    print_table(f"Server time per peer by part ({result.backend}; profile share x srv us/peer)",
                [{"part": name, "share %": 100 * share, "us/peer": round(share * per_peer)}
                 for name, share in profile_split(profile, SPLIT_RULES)],
                ("part", "share %", "us/peer"))


def bench_backend(backend: str, database_url: str | None, args: argparse.Namespace,
                  bodies: list[bytes]) -> Result:
    result = Result(backend, processes=processes(args, backend))
    print(f"{backend}: init + serve", file=sys.stderr, flush=True)
    with Server(pools=args.pool, database_url=database_url, keep=args.keep) as server:
        server.init()
        server.start()
        if args.keep:
            print(f"  data dir {server.data_dir}", file=sys.stderr)
        with contextlib.ExitStack() as more:
            replicas = tuple(more.enter_context(server.replica())
                             for _ in range(processes(args, backend) - 1))
            for replica in replicas:  # one at a time, as a service manager would
                replica.start()
            run(drive(server, args, bodies, result, database_url, replicas))
    return result


def bench_http_floor(args: argparse.Namespace, bodies: list[bytes]) -> Result:
    """The same client, bodies and concurrency against bench/httpfloor.py (HTTP alone)."""
    result = Result("http floor")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.httpfloor", "--port", str(port)],
                            cwd=Path(__file__).resolve().parent.parent)
    try:
        base = f"http://127.0.0.1:{port}"

        async def drive_floor() -> None:
            for _ in range(100):  # wait until it listens
                try:
                    async with aiohttp.ClientSession() as probe, probe.post(
                            f"{base}/v1/peers", data=bodies[0],
                            headers={"Authorization": "Bearer x"}) as resp:
                        await resp.read()
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            connector = aiohttp.TCPConnector(limit=args.concurrency)
            async with aiohttp.ClientSession(base, connector=connector) as session:
                cpu_before, client_before = process_cpu_seconds(proc.pid), time.process_time()
                psutil.cpu_percent()
                await provision(session, "x", bodies, args.concurrency, result,
                                [f"{base}/v1/peers"])
                result.server_cpu = process_cpu_seconds(proc.pid) - cpu_before
                result.client_cpu = time.process_time() - client_before
                result.host_cpu_pct = psutil.cpu_percent()

        run(drive_floor())
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return result


def processes(args: argparse.Namespace, backend: str) -> int:
    """API processes sharing the load: --processes on PostgreSQL; SQLite has one writer."""
    return args.processes if backend == "postgres" else 1


def cpu_bound(r: Result) -> float:
    """Peers/s at which the server processes (one event loop each) or all CPUs run out."""
    if not r.peers:
        return 0.0
    server, database = r.server_cpu / r.peers, r.db_cpu / r.peers
    bounds = [r.processes / server] if server else []
    if server + database:
        bounds.append((os.cpu_count() or 1) / (server + database))
    return min(bounds) if bounds else 0.0


def report_floor(floor: Result, results: list[Result]) -> None:
    rate = floor.peers / floor.seconds if floor.seconds else 0.0
    per_request = 1e6 * floor.server_cpu / floor.peers if floor.peers else 0.0
    seconds = floor.seconds or float("nan")
    rows = [{"server": "bare aiohttp (bench/httpfloor.py): parse the body, answer 201",
             "requests/s": rate, "p99 ms": ms(floor.latencies, 99),
             "srv us/request": round(per_request), "srv cpu %": 100 * floor.server_cpu / seconds,
             "client cpu %": 100 * floor.client_cpu / seconds}]
    for r in results:
        if r.peers:
            mine = 1e6 * r.server_cpu / r.peers
            rows.append({"server": f"vpngw, {r.backend}, {r.processes} process(es)",
                         "requests/s": r.peers / r.seconds, "p99 ms": ms(r.latencies, 99),
                         "srv us/request": round(mine),
                         "srv cpu %": 100 * r.server_cpu / r.seconds,
                         "client cpu %": 100 * r.client_cpu / r.seconds,
                         "HTTP floor share": f"{per_request / mine:.0%}"})
    print_table("The HTTP part alone, same client, bodies and concurrency (the limit beside it)",
                rows, ("server", "requests/s", "p99 ms", "srv us/request", "srv cpu %",
                       "client cpu %", "HTTP floor share"))


def ms(values: list[float], p: float) -> float:
    return percentile(values, p) * 1000


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(f"\nvpngw provisioning benchmark: {args.peers:,} peers, {args.concurrency} concurrent "
          f"clients, pools {', '.join(args.pool)}")
    print(f"Note: {machine_note()}.")
    print("srv/client cpu % are percent of one CPU; host cpu % is the busy share of all CPUs "
          "(anything else running on the machine shows up there). WireGuard backend: off "
          "(API, database and audit log only).")
    rows = []
    for r in results:
        rate = r.peers / r.seconds if r.seconds else 0.0
        p99 = ms(r.latencies, 99)
        row: dict[str, Any] = {
            "backend": r.backend, "procs": r.processes, "peers": r.peers, "errors": r.errors,
            "seconds": r.seconds,
            "peers/s": rate, "p50 ms": ms(r.latencies, 50), "p90 ms": ms(r.latencies, 90),
            "p99 ms": p99, "max ms": ms(r.latencies, 100),
            "srv cpu %": 100 * r.server_cpu / r.seconds if r.seconds else 0.0,
            # Server CPU time per peer: unlike peers/s, barely moved by other load.
            "srv us/peer": round(1e6 * r.server_cpu / r.peers) if r.peers else 0,
            "db us/peer": round(1e6 * r.db_cpu / r.peers) if r.peers else 0,
            "cpu bound/s": cpu_bound(r),
            "client cpu %": 100 * r.client_cpu / r.seconds if r.seconds else 0.0,
            "host cpu %": r.host_cpu_pct,
            "audit backlog": r.backlog, "drain s": r.drain_seconds,
        }
        if r.backend == "sqlite" or r.processes >= PG_TARGET_PROCESSES:
            target = TARGET_RATE if r.backend == "sqlite" else PG_TARGET_RATE
            goal = f">= {target:,.0f}/s, p99 <= {TARGET_P99_MS:.0f} ms"
            row["target"] = ("met" if rate >= target and p99 <= TARGET_P99_MS
                             else f"MISSED ({goal})")
        rows.append(row)
    print_table("POST /v1/peers", rows, (
        "backend", "procs", "peers", "errors", "seconds", "peers/s", "p50 ms", "p90 ms", "p99 ms",
        "max ms", "srv cpu %", "srv us/peer", "db us/peer", "cpu bound/s", "client cpu %",
        "host cpu %", "audit backlog", "drain s", "target"))
    print("cpu bound/s: the rate at which this host's CPUs would be used up by the server "
          "processes (each one event loop: at most one CPU) and PostgreSQL's processes, at "
          "the CPU per peer just measured, with no load generator beside them.")
    print_table("GET /v1/peers?limit=100 (one request in flight, "
                f"{args.page_samples} samples each)",
                [{"backend": r.backend, "first p50 ms": ms(r.first_page, 50),
                  "first p99 ms": ms(r.first_page, 99), "deep p50 ms": ms(r.deep_page, 50),
                  "deep p99 ms": ms(r.deep_page, 99)} for r in results],
                ("backend", "first p50 ms", "first p99 ms", "deep p50 ms", "deep p99 ms"))
    print_table("Server RSS (MiB)",
                [{"backend": r.backend, "peers": r.peers, "RSS at N": r.rss_at_n,
                  "peak RSS": r.rss_peak,
                  "target": "met" if max(r.rss_at_n, r.rss_peak) <= TARGET_RSS_MB
                  else f"MISSED (<= {TARGET_RSS_MB:.0f})"} for r in results],
                ("backend", "peers", "RSS at N", "peak RSS", "target"))
    print_table("POST /v1/peers by tenth of the run (completion order)",
                [{"backend": r.backend, "tenth": k + 1, "peers/s": rate, "p50 ms": p50,
                  "p99 ms": p99} for r in results for k, (rate, p50, p99) in enumerate(r.deciles)],
                ("backend", "tenth", "peers/s", "p50 ms", "p99 ms"))
    for r in results:
        if r.error_sample:
            print(f"\n{r.backend}: first error: {r.error_sample}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, default=100_000, help="peers to provision")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients")
    parser.add_argument("--pool", action="append", help="address pool for init (repeatable; "
                        f"default {' '.join(DEFAULT_POOLS)})")
    parser.add_argument("--postgres", default=DEFAULT_PG_ADMIN,
                        help="admin URL of a PostgreSQL server on which to create a scratch "
                        "database (default %(default)s; skipped if unreachable)")
    parser.add_argument("--processes", type=int, default=1,
                        help="API processes on PostgreSQL sharing the database and the load "
                        "(clients take them in turn; default %(default)s)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--page-samples", type=int, default=200,
                        help="requests per page-latency measurement")
    parser.add_argument("--profile", metavar="DIR",
                        help="record the server with py-spy during provisioning into DIR")
    parser.add_argument("--top", type=int, default=25, help="profile rows to print")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the HTTP-only limit (bench/httpfloor.py) run")
    parser.add_argument("--keep", action="store_true", help="keep data dirs and databases")
    args = parser.parse_args(argv)
    args.pool = args.pool or list(DEFAULT_POOLS)

    backends: list[str] = [] if args.no_sqlite else ["sqlite"]
    if not args.no_postgres:
        if pg_reachable(args.postgres):
            backends.append("postgres")
        else:
            print(f"PostgreSQL at {args.postgres} is unreachable: SQLite only", file=sys.stderr)
    print(f"generating {args.peers:,} client key pairs (not timed)", file=sys.stderr, flush=True)
    bodies = client_keys(args.peers)
    results = []
    for backend in backends:
        if backend == "sqlite":
            results.append(bench_backend("sqlite", None, args, bodies))
        else:
            with pg_database(args.postgres, keep=args.keep) as url:
                results.append(bench_backend("postgres", url, args, bodies))
    floor = None if args.no_floor else bench_http_floor(args, bodies)
    report(results, args)
    if floor is not None:
        report_floor(floor, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
