"""Soak: mixed traffic at about 80 % of measured capacity against one server, for minutes.

1. `vpngw init` + `vpngw serve` (SQLite, no WireGuard interface) on a free loopback port;
   two verified tenants, a registered regulator key, and some peers to read.
2. Capacity: the same mix, closed loop with --concurrency clients for --calibrate
   seconds; completed requests per second is the capacity.
3. Soak: the mix open loop at --load (0.8) x capacity for --duration seconds (600):
   provisioning and revocation, config downloads, peer and tenant listings, the ops
   audit view, RFC 9421 signed regulator queries (each logged before it is answered),
   checkpoints, and bad requests (broken JSON, bad keys, unknown ids, no token, a
   small-order regulator key), each with the status it must get.
4. Every --window seconds (60): p99 per route; every 5 s: the server's RSS and open fds.
5. After: the server is stopped and `vpngw audit verify` must pass on its data dir.

An error is a transport failure or timeout, a 5xx, any status other than the expected
one, or an error that is not problem+json: the target is 0. RSS target: no growth after
the first window (warm-up) beyond 10 %.

    .venv/bin/python -m bench.soak                    # 10 minutes
    .venv/bin/python -m bench.soak --duration 60 --window 15 --calibrate 10

It prints tables; it is not a test and fails nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import psutil
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bench.common import PYTHON, ROOT, Server, machine_note, percentile, print_table, run
from gateway.regulator import httpsig
from gateway.regulator.client import public_key_b64

KEYID = "soak-regulator"
RSS_GROWTH_LIMIT = 0.10
MAX_IN_FLIGHT = 256
POOLS = ("10.64.0.0/10", "fd00:64::/64")
PROBLEM = "application/problem+json"
TENANT = {"tax_id": "NTN-S", "country": "PK", "contact_email": "it@soak.example",
          "max_peers": 1_000_000}


@dataclass
class Sample:
    at: float  # seconds since the soak started
    route: str
    ms: float
    error: str | None


@dataclass
class Traffic:
    """What the mix needs to know: tokens, live peers, the regulator key."""

    session: aiohttp.ClientSession
    authority: str
    ops: dict[str, str]
    tenant: dict[str, str]
    tenant_id: str
    regulator_key: Ed25519PrivateKey
    rng: random.Random
    # Read and queried: never revoked, so no read races a revocation.
    peers: list[tuple[str, str]] = field(default_factory=list)  # (id, first tunnel ip)
    # Made during the load: these are the ones revoked.
    disposable: list[str] = field(default_factory=list)
    queries: int = 0


Request = Callable[[Traffic], Awaitable[tuple[int, str, str]]]


async def _call(t: Traffic, method: str, path: str, *, expect: int,
                headers: dict[str, str] | None = None, data: bytes | None = None,
                ) -> tuple[int, str, str]:
    async with t.session.request(method, path, headers=headers, data=data) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


def _json(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _public_key() -> str:
    return base64.b64encode(X25519PrivateKey.generate().public_key().public_bytes_raw()).decode()


def _json_headers(auth: dict[str, str]) -> dict[str, str]:
    return {**auth, "Content-Type": "application/json"}


def _peer(t: Traffic) -> str:
    return t.rng.choice(t.peers)[0]


async def provision(t: Traffic) -> tuple[int, str, str]:
    status, ctype, body = await _call(
        t, "POST", "/v1/peers", expect=201, headers=_json_headers(t.tenant),
        data=_json({"name": f"soak-{secrets.token_hex(4)}", "public_key": _public_key()}))
    if status == 201:
        t.disposable.append(json.loads(body)["id"])
    return status, ctype, body


async def revoke(t: Traffic) -> tuple[int, str, str]:
    if not t.disposable:
        return await config(t)  # nothing made yet to revoke: a read instead
    peer_id = t.disposable.pop(t.rng.randrange(len(t.disposable)))
    return await _call(t, "DELETE", f"/v1/peers/{peer_id}", expect=204, headers=t.tenant)


async def config(t: Traffic) -> tuple[int, str, str]:
    return await _call(t, "GET", f"/v1/peers/{_peer(t)}/config", expect=200, headers=t.tenant)


async def get_peer(t: Traffic) -> tuple[int, str, str]:
    return await _call(t, "GET", f"/v1/peers/{_peer(t)}", expect=200, headers=t.tenant)


async def list_peers(t: Traffic) -> tuple[int, str, str]:
    return await _call(t, "GET", "/v1/peers?limit=50", expect=200, headers=t.tenant)


async def list_tenants(t: Traffic) -> tuple[int, str, str]:
    return await _call(t, "GET", "/ops/v1/tenants?limit=50", expect=200, headers=t.ops)


async def audit_view(t: Traffic) -> tuple[int, str, str]:
    return await _call(t, "GET", f"/ops/v1/audit?tenant={t.tenant_id}&limit=50", expect=200,
                       headers=t.ops)


async def checkpoint(t: Traffic) -> tuple[int, str, str]:
    return await _call(t, "GET", "/regulator/v1/checkpoint", expect=200)


async def regulator_query(t: Traffic) -> tuple[int, str, str]:
    t.queries += 1
    now = datetime.now(UTC)
    wire = "%Y-%m-%dT%H:%M:%SZ"
    body = _json({
        "request_id": {"country": "PK", "authority": "PTA", "number": f"SOAK-{t.queries}"},
        "authorisation": {"reference": "PTA/LI/SOAK", "legal_basis": "PECA 2016 s.32",
                          "valid_from": (now - timedelta(days=1)).strftime(wire),
                          "valid_until": (now + timedelta(days=1)).strftime(wire)},
        "query": {"kind": "attribution.tunnel_ip", "ip": t.rng.choice(t.peers)[1],
                  "at": now.strftime(wire)}})
    signed = httpsig.sign_request(private_key=t.regulator_key, keyid=KEYID,
                                  authority=t.authority, body=body, created=int(time.time()),
                                  nonce=secrets.token_urlsafe(16), scheme="http")
    return await _call(t, "POST", httpsig.REQUEST_PATH, expect=200, headers=signed.headers(),
                       data=body)


async def bad_json(t: Traffic) -> tuple[int, str, str]:
    return await _call(t, "POST", "/v1/peers", expect=400, headers=_json_headers(t.tenant),
                       data=b'{"name": ')


async def bad_key(t: Traffic) -> tuple[int, str, str]:
    return await _call(t, "POST", "/v1/peers", expect=400, headers=_json_headers(t.tenant),
                       data=_json({"name": "x", "public_key": "A" * 43 + "="}))


async def unknown_peer(t: Traffic) -> tuple[int, str, str]:
    return await _call(t, "GET", "/v1/peers/01a22ad1-0000-7000-8000-000000000000", expect=404,
                       headers=t.tenant)


async def no_token(t: Traffic) -> tuple[int, str, str]:
    return await _call(t, "GET", "/v1/peers", expect=401)


async def degenerate_regulator_key(t: Traffic) -> tuple[int, str, str]:
    return await _call(t, "POST", "/ops/v1/regulator-keys", expect=400,
                       headers=_json_headers(t.ops), data=_json({
                           "keyid": "soak-forged", "label": "forged",
                           "public_key": "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}))


# (route label, weight, request, expected status)
MIX: list[tuple[str, int, Request, int]] = [
    ("POST /v1/peers", 10, provision, 201),
    ("DELETE /v1/peers/{id}", 3, revoke, 204),
    ("GET /v1/peers/{id}/config", 20, config, 200),
    ("GET /v1/peers/{id}", 10, get_peer, 200),
    ("GET /v1/peers", 12, list_peers, 200),
    ("GET /ops/v1/tenants", 4, list_tenants, 200),
    ("GET /ops/v1/audit", 4, audit_view, 200),
    ("POST /regulator/v1/queries", 6, regulator_query, 200),
    ("GET /regulator/v1/checkpoint", 5, checkpoint, 200),
    ("bad: broken JSON", 6, bad_json, 400),
    ("bad: all-zero peer key", 6, bad_key, 400),
    ("bad: unknown peer", 6, unknown_peer, 404),
    ("bad: no token", 5, no_token, 401),
    ("bad: small-order regulator key", 3, degenerate_regulator_key, 400),
]
EXPECTED = {label: status for label, _, _, status in MIX}


def _classify(label: str, status: int, ctype: str, body: str) -> str | None:
    """None for the right answer, else a short reason."""
    if label == "DELETE /v1/peers/{id}" and status == 200:  # fell back to a config download
        return None
    if status != EXPECTED[label]:
        return f"{status} (expected {EXPECTED[label]}): {body[:120]}"
    if status >= 400 and not ctype.startswith(PROBLEM):
        return f"{status} with {ctype or 'no Content-Type'}, not {PROBLEM}"
    return None


async def _timed(t: Traffic, label: str, request: Request, started: float,
                 samples: list[Sample]) -> None:
    t0 = time.perf_counter()
    try:
        status, ctype, body = await request(t)
        error = _classify(label, status, ctype, body)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    t1 = time.perf_counter()
    samples.append(Sample(t1 - started, label, (t1 - t0) * 1000, error))


def _pick(rng: random.Random) -> tuple[str, Request]:
    label, _, request, _ = rng.choices(MIX, weights=[w for _, w, _, _ in MIX])[0]
    return label, request


# --------------------------------------------------------------------------- setup


async def _expect(resp: aiohttp.ClientResponse, status: int) -> Any:
    body = await resp.text()
    if resp.status != status:
        raise RuntimeError(f"{resp.method} {resp.url.path}: {resp.status} {body[:300]}")
    return json.loads(body) if body else None


async def prepare(session: aiohttp.ClientSession, server: Server, seed: int,
                  initial_peers: int) -> Traffic:
    ops = {"Authorization": f"Bearer {server.ops_token}"}
    tokens: list[tuple[str, str]] = []  # the first tenant sends the load; both are listed
    for n, name in enumerate(("Soak Bank Ltd", "Other Soak Ltd")):
        async with session.post("/ops/v1/tenants", headers=ops, json={
                **TENANT, "legal_name": name, "registration_number": f"SOAK-{n}"}) as resp:
            tenant = await _expect(resp, 201)
        async with session.post(f"/ops/v1/tenants/{tenant['id']}/verification",
                                json={"evidence_reference": "SOAK-KYC"}, headers=ops) as resp:
            await _expect(resp, 200)
        async with session.post(f"/ops/v1/tenants/{tenant['id']}/tokens", headers=ops) as resp:
            tokens.append(((await _expect(resp, 201))["token"], tenant["id"]))
    tenant_token, tenant_id = tokens[0]
    key = Ed25519PrivateKey.generate()
    async with session.post("/ops/v1/regulator-keys", headers=ops, json={
            "keyid": KEYID, "public_key": public_key_b64(key), "label": "soak"}) as resp:
        await _expect(resp, 201)
    traffic = Traffic(session, f"127.0.0.1:{server.port}", ops,
                      {"Authorization": f"Bearer {tenant_token}"}, tenant_id, key,
                      random.Random(seed))
    for _ in range(initial_peers):
        status, _, body = await provision(traffic)
        if status != 201:
            raise RuntimeError(f"seeding peers failed with {status}: {body[:200]}")
        doc = json.loads(body)
        traffic.peers.append((doc["id"], doc["tunnel_ips"][0]))
    traffic.disposable.clear()
    return traffic


# --------------------------------------------------------------------------- load


async def capacity(t: Traffic, seconds: float, concurrency: int) -> tuple[float, int]:
    """Completed requests per second, closed loop; and the errors seen meanwhile."""
    samples: list[Sample] = []
    started = time.perf_counter()
    deadline = started + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            label, request = _pick(t.rng)
            await _timed(t, label, request, started, samples)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return len(samples) / (time.perf_counter() - started), sum(bool(s.error) for s in samples)


@dataclass
class Probe:
    at: float
    rss_mb: float
    fds: int
    server_cpu_s: float
    load_1min: float


async def soak(t: Traffic, server: Server, rate: float, seconds: float
               ) -> tuple[list[Sample], list[Probe], int]:
    """Open loop at `rate` requests/s; returns samples, RSS/fd probes, and requests
    not sent because MAX_IN_FLIGHT were already waiting (the server fell behind)."""
    assert server.proc is not None
    process = psutil.Process(server.proc.pid)
    samples: list[Sample] = []
    probes: list[Probe] = []
    in_flight: set[asyncio.Task[None]] = set()
    shed = 0
    started = time.perf_counter()

    def sample() -> Probe:
        return Probe(time.perf_counter() - started, server.rss_mb(), process.num_fds(),
                     server.cpu_seconds(), os.getloadavg()[0])

    async def probe() -> None:
        while True:
            probes.append(sample())
            await asyncio.sleep(5)

    prober = asyncio.create_task(probe())
    total = int(rate * seconds)
    for i in range(total):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= MAX_IN_FLIGHT:
            shed += 1
            continue
        label, request = _pick(t.rng)
        task = asyncio.create_task(_timed(t, label, request, started, samples))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)
    prober.cancel()
    probes.append(sample())
    return samples, probes, shed


def audit_verify(server: Server) -> tuple[bool, str]:
    out = subprocess.run([PYTHON, "-m", "gateway.cli", "audit", "verify", "--data-dir",
                          str(server.data_dir)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    text = (out.stdout + out.stderr).strip().splitlines()
    return out.returncode == 0, (text[-1] if text else f"exit {out.returncode}")


# --------------------------------------------------------------------------- report


def report(samples: list[Sample], probes: list[Probe], *, rate: float, cap: float,
           cal_errors: int, shed: int, seconds: float, window: float,
           verified: tuple[bool, str], args: argparse.Namespace) -> None:
    errors = [s for s in samples if s.error]
    windows = max(1, int(-(-seconds // window)))
    by_route: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_route[s.route].append(s)
    rows = []
    for label, _, _, _ in MIX:
        route = by_route.get(label, [])
        row: dict[str, Any] = {"route": label, "n": len(route),
                               "errors": sum(bool(s.error) for s in route),
                               "p50 ms": percentile([s.ms for s in route], 50),
                               "p99 ms": percentile([s.ms for s in route], 99)}
        for w in range(windows):
            row[f"p99 @{int(w * window)}s"] = percentile(
                [s.ms for s in route if w * window <= s.at < (w + 1) * window], 99)
        rows.append(row)
    columns = ["route", "n", "errors", "p50 ms", "p99 ms",
               *[f"p99 @{int(w * window)}s" for w in range(windows)]]
    print(f"\nSoak: {machine_note()}")
    print_table(f"Per route, p99 per {int(window)} s window (ms)", rows, columns)

    warm = next((p for p in probes if p.at >= window), probes[0])
    end = probes[-1]
    growth = (end.rss_mb - warm.rss_mb) / warm.rss_mb
    print_table("Summary", [
        {"measure": "capacity (closed loop, req/s)", "value": cap,
         "target": f"{args.concurrency} clients, {args.calibrate:.0f} s"},
        {"measure": "errors while calibrating", "value": cal_errors, "target": "0"},
        {"measure": "offered rate (req/s)", "value": rate,
         "target": f"{args.load:.0%} of capacity"},
        {"measure": "achieved rate (req/s)", "value": len(samples) / seconds, "target": ""},
        {"measure": "requests", "value": len(samples), "target": f"{seconds:.0f} s"},
        {"measure": "errors", "value": len(errors),
         "target": "0 (ok)" if not errors else "0 (MISSED)"},
        {"measure": "not sent (server behind)", "value": shed, "target": "0"},
        {"measure": "RSS at start (MiB)", "value": probes[0].rss_mb, "target": ""},
        {"measure": f"RSS after warm-up @{warm.at:.0f}s (MiB)", "value": warm.rss_mb,
         "target": ""},
        {"measure": "RSS at end (MiB)", "value": end.rss_mb,
         "target": f"<= +{RSS_GROWTH_LIMIT:.0%} after warm-up "
                   f"({'ok' if growth <= RSS_GROWTH_LIMIT else 'MISSED'}: {growth:+.1%})"},
        {"measure": "open fds start / max / end",
         "value": f"{probes[0].fds} / {max(p.fds for p in probes)} / {end.fds}",
         "target": f"client connections are capped at {MAX_IN_FLIGHT}"},
        {"measure": "server CPU (% of one core)",
         "value": 100 * (end.server_cpu_s - probes[0].server_cpu_s) / max(end.at, 1e-9),
         "target": ""},
        {"measure": "host load average (1 min) start / max",
         "value": f"{probes[0].load_1min:.1f} / {max(p.load_1min for p in probes):.1f}",
         "target": f"{os.cpu_count()} CPUs; above that the machine was shared"},
        {"measure": "vpngw audit verify", "value": "passed" if verified[0] else "FAILED",
         "target": verified[1][:90]},
    ], ("measure", "value", "target"))
    if errors:
        reasons = Counter(f"{s.route}: {s.error}" for s in errors)
        print_table("Errors (most common)", [{"n": n, "reason": r[:160]}
                                             for r, n in reasons.most_common(10)], ("n", "reason"))


async def bench(args: argparse.Namespace) -> None:
    # A pool far larger than the peers made (revoked addresses stay quarantined).
    with Server(pools=POOLS, keep=args.keep) as server:
        server.init()
        server.start()
        connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(server.base_url, connector=connector,
                                         timeout=timeout) as session:
            print("preparing tenants, peers and a regulator key", file=sys.stderr, flush=True)
            traffic = await prepare(session, server, args.seed, args.initial_peers)
            print(f"calibrating for {args.calibrate:.0f} s", file=sys.stderr, flush=True)
            cap, cal_errors = await capacity(traffic, args.calibrate, args.concurrency)
            rate = cap * args.load
            print(f"capacity {cap:.0f} req/s; soaking at {rate:.0f} req/s for "
                  f"{args.duration:.0f} s", file=sys.stderr, flush=True)
            samples, probes, shed = await soak(traffic, server, rate, args.duration)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGINT)  # a clean stop: the sequencer drains first
        server.proc.wait(timeout=60)
        print("running vpngw audit verify", file=sys.stderr, flush=True)
        verified = audit_verify(server)
        report(samples, probes, rate=rate, cap=cap, cal_errors=cal_errors, shed=shed,
               seconds=args.duration, window=args.window, verified=verified, args=args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="soak seconds (600)")
    parser.add_argument("--window", type=float, default=60.0,
                        help="seconds per p99 column (60)")
    parser.add_argument("--calibrate", type=float, default=20.0,
                        help="seconds of closed-loop load to measure capacity (20)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="clients while measuring capacity (16)")
    parser.add_argument("--load", type=float, default=0.8, help="fraction of capacity (0.8)")
    parser.add_argument("--initial-peers", type=int, default=200, help="peers made first (200)")
    parser.add_argument("--seed", type=int, default=1, help="mix seed (1)")
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    run(bench(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
