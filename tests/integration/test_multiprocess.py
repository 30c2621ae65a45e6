"""Several `vpngw serve` processes sharing one PostgreSQL: no address handed out twice,
one linear log with consistent checkpoints."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from gateway.audit import merkle
from gateway.audit.payloadkeys import PayloadKeys
from gateway.audit.storage import Opener

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.postgres


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(
                f"server on port {port} did not become ready:\n" + log_path.read_text()[-3000:]
            )
        time.sleep(0.1)


@pytest.fixture
def servers(tmp_path: Path, postgres_url: str) -> Iterator[tuple[list[str], str, str]]:
    data = tmp_path / "data"
    init = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "init",
            "--data-dir",
            str(data),
            "--json",
            "--database-url",
            postgres_url,
            "--pool",
            "10.60.0.0/24",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    ops = json.loads(init.stdout)["ops_token"]
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    env = {**os.environ, "VPNGW_SERVER_LOG_FORMAT": "json"}
    try:
        # One at a time: each is ready before the next starts, so a slow start shows
        # up as the process's own log, not as a timeout.
        for n in range(3):
            port = free_port()
            log_path = tmp_path / f"serve-{n}.log"
            with log_path.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "gateway.cli",
                            "serve",
                            "--data-dir",
                            str(data),
                            "--listen",
                            f"127.0.0.1:{port}",
                        ],
                        cwd=ROOT,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env,
                    )
                )
            urls.append(f"http://127.0.0.1:{port}")
            wait_ready(procs[-1], port, log_path)
        yield urls, ops, postgres_url
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=15)


async def test_processes_share_the_pool_and_the_log(
    servers: tuple[list[str], str, str], tmp_path: Path
) -> None:
    urls, ops, db_url = servers
    auth = {"Authorization": f"Bearer {ops}"}
    async with aiohttp.ClientSession() as http:

        async def post(url: str, path: str, body: dict[str, object], token: dict[str, str]) -> dict:
            async with http.post(url + path, json=body, headers=token) as resp:
                doc = await resp.json(content_type=None)
                assert resp.status in (200, 201), doc
                return doc  # type: ignore[no-any-return]

        tenant = await post(
            urls[0],
            "/ops/v1/tenants",
            {
                "legal_name": "Shared Ltd",
                "registration_number": "RC-1",
                "tax_id": "T",
                "country": "PK",
                "contact_email": "a@b.example",
                "max_peers": 1000,
            },
            auth,
        )
        await post(
            urls[1],
            f"/ops/v1/tenants/{tenant['id']}/verification",
            {"evidence_reference": "K"},
            auth,
        )
        token = (await post(urls[2], f"/ops/v1/tenants/{tenant['id']}/tokens", {}, auth))["token"]
        tauth = {"Authorization": f"Bearer {token}"}
        peers = await asyncio.gather(
            *(post(urls[i % 3], "/v1/peers", {"name": f"d{i}"}, tauth) for i in range(90))
        )
    ips = [p["tunnel_ips"][0] for p in peers]
    assert len(set(ips)) == 90

    await asyncio.sleep(1.5)  # every process's sequencer has run by now
    conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        rows = await conn.fetch("SELECT idx, leaf, leaf_hash FROM log_entries ORDER BY idx")
        heads = await conn.fetch("SELECT size, root FROM checkpoints ORDER BY size")
        outbox = await conn.fetchval("SELECT count(*) FROM outbox")
    finally:
        await conn.close()
    assert outbox == 0
    assert [r["idx"] for r in rows] == list(range(len(rows)))
    # Sealed by whichever process committed it, every payload opens with the one key file.
    opener = Opener(PayloadKeys.in_data_dir(tmp_path / "data"))
    leaves = [opener.strict(r["leaf"], r["leaf_hash"]) or b"" for r in rows]
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    assert hashes == [bytes(r["leaf_hash"]) for r in rows]
    # Each checkpoint, whichever process signed it, is a prefix of the one history.
    for head in heads:
        assert merkle.root_from_leaf_hashes(hashes[: head["size"]]) == bytes(head["root"])
    types = [json.loads(leaf)["type"] for leaf in leaves]
    assert types.count("peer.provisioned") == 90
