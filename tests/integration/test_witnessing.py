"""The gateway's side of witnessing, in-process on SQLite and PostgreSQL, against real
witnesses served over HTTP on loopback: submission, the 409 retry, refusals, a witness
down, and the cosignatures stored and served.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from gateway.app import create_app
from gateway.audit.cosignature import Cosigner, open_witnessed_checkpoint
from gateway.audit.note import Ed25519NoteSigner, Ed25519NoteVerifier
from gateway.audit.schema import witness_cosignatures
from gateway.http import appkeys
from gateway.keyfiles import load_keys
from gateway.settings import Settings
from gateway.witness.protocol import Decision, render_add_checkpoint
from gateway.witness.server import Witness, create_witness_app
from gateway.witness.store import WitnessStore
from tests.conftest import FakeClock
from tests.helpers import create_tenant, ops_token

Client = TestClient[Any, Any]
ORIGIN = "vpngw.example/log"


class RecordingWitness(Witness):
    """A real witness that also remembers the status of every answer it gave."""

    statuses: list[int]

    async def add_checkpoint(self, body: bytes) -> tuple[Decision, str]:
        decision, line = await super().add_checkpoint(body)
        self.statuses.append(decision.status)
        return decision, line


def _witness(tmp_path: Path, settings_dir: Path, name: str, seed: int) -> RecordingWitness:
    log_vkey = Ed25519NoteSigner(ORIGIN, load_keys(settings_dir).log).verifier
    cosigner = Cosigner(f"witness.test/{name}",
                        Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))
    witness = RecordingWitness(cosigner=cosigner, logs={ORIGIN: log_vkey},
                               store=WitnessStore(tmp_path / f"{name}-state"))
    witness.statuses = []
    return witness


async def _serve(witness: Witness) -> TestServer:
    server = TestServer(create_witness_app(witness), host="127.0.0.1")
    await server.start_server()
    return server


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def _events(client: Client, n: int) -> None:
    ops = await ops_token(client)
    for _ in range(n):
        number = secrets.token_hex(4)
        await create_tenant(client, ops, legal_name=f"Witnessed {number} Ltd",
                            registration_number=f"WT-{number}")
    await client.app[appkeys.SEQUENCER].drain()


async def test_checkpoints_are_cosigned_stored_and_served(
    aiohttp_client: Any, make_settings: Callable[..., Settings], database_url: str,
    tmp_path: Path, clock: FakeClock,
) -> None:
    base = make_settings(database_url)
    witness = _witness(tmp_path, base.data_dir, "w1", 7)
    down = _closed_port()
    server = await _serve(witness)
    try:
        absent = _witness(tmp_path, base.data_dir, "w2", 8).cosigner.verifier.vkey()
        entries = (f"http://127.0.0.1:{server.port} {witness.cosigner.verifier.vkey()}",
                   f"http://127.0.0.1:{down} {absent}")
        settings = base.replace(witness={"witnesses": entries, "interval_seconds": 3600.0,
                                         "answer_wait_seconds": 30.0})
        client: Client = await aiohttp_client(create_app(settings, clock=clock))
        await _events(client, 2)
        note = await (await client.get("/regulator/v1/checkpoint")).text()
        log_key = Ed25519NoteVerifier.from_vkey(
            (await (await client.get("/regulator/v1/keys")).json())["log"]["vkey"])
        opened = open_witnessed_checkpoint(note, log_key, [witness.cosigner.verifier])
        assert [c.name for c in opened.cosignatures] == ["witness.test/w1"]
        size = opened.signed.checkpoint.size
        async with client.app[appkeys.DATABASE].read() as conn:
            rows = (await conn.execute(select(witness_cosignatures.c.witness,
                                              witness_cosignatures.c.size))).all()
        assert (witness.cosigner.verifier.label, size) in [(r.witness, r.size) for r in rows]
        assert {r.witness for r in rows} == {witness.cosigner.verifier.label}
        # The witness that is down: reported, lagging, and the service stays ready.
        ready = await client.get("/readyz")
        doc = await ready.json()
        assert ready.status == 200 and doc["status"] == "ready"
        report = doc["witnesses"]
        w1_label = witness.cosigner.verifier.label
        assert report[w1_label]["error"] is None and report[w1_label]["lag_entries"] == 0
        (w2_label,) = set(report) - {w1_label}
        assert "cannot reach" in report[w2_label]["error"]
        assert report[w2_label]["lag_entries"] == size
        metrics = await (await client.get("/metrics")).text()
        assert f'vpngw_witness_lag_entries{{witness="{w2_label}"}} {float(size)}' in metrics
    finally:
        await server.close()


async def test_a_witness_that_knows_a_later_size_is_resubmitted_from_it(
    aiohttp_client: Any, make_settings: Callable[..., Settings], database_url: str,
    tmp_path: Path, clock: FakeClock,
) -> None:
    base = make_settings(database_url)
    witness = _witness(tmp_path, base.data_dir, "w1", 9)
    server = await _serve(witness)
    try:
        settings = base.replace(witness={"witnesses": (
            f"http://127.0.0.1:{server.port}/ {witness.cosigner.verifier.vkey()}",),
            "interval_seconds": 3600.0, "answer_wait_seconds": 30.0})
        client: Client = await aiohttp_client(create_app(settings, clock=clock))
        # The background round started with the app is over (it holds the witness's lock
        # while it runs), so it cannot submit the first events behind this test's back.
        await client.app[appkeys.WITNESSING].catch_up()
        await _events(client, 1)
        audit_log = client.app[appkeys.AUDIT_LOG]
        # Someone else (another gateway process) already brought the witness to this size.
        size, note = await audit_log.latest_checkpoint()
        held = (await witness.store.latest()).get(ORIGIN)
        old = held.size if held is not None else 0
        proof = await audit_log.consistency_proof(old, size) if 0 < old < size else []
        decision, _ = await witness.add_checkpoint(render_add_checkpoint(old, proof, note))
        assert decision.status == 200
        witness.statuses.clear()
        await _events(client, 3)
        served = await (await client.get("/regulator/v1/checkpoint")).text()
        opened = open_witnessed_checkpoint(served, audit_log.signer.verifier,
                                           [witness.cosigner.verifier])
        assert opened.signed.checkpoint.size > size
        assert len(opened.cosignatures) == 1
        # First try from size 0: 409 with the witness's size; then a proof from there.
        assert witness.statuses == [409, 200]
    finally:
        await server.close()


async def test_a_cosignature_by_another_key_is_not_stored(
    aiohttp_client: Any, make_settings: Callable[..., Settings], database_url: str,
    tmp_path: Path, clock: FakeClock,
) -> None:
    base = make_settings(database_url)
    witness = _witness(tmp_path, base.data_dir, "w1", 10)
    configured = _witness(tmp_path, base.data_dir, "w1", 11)  # same name, another key
    server = await _serve(witness)
    try:
        settings = base.replace(witness={"witnesses": (
            f"http://127.0.0.1:{server.port} {configured.cosigner.verifier.vkey()}",),
            "interval_seconds": 3600.0, "answer_wait_seconds": 30.0})
        client: Client = await aiohttp_client(create_app(settings, clock=clock))
        await _events(client, 1)
        await client.get("/regulator/v1/checkpoint")
        async with client.app[appkeys.DATABASE].read() as conn:
            assert (await conn.execute(select(witness_cosignatures))).all() == []
        report = (await (await client.get("/readyz")).json())["witnesses"]
        assert "no valid cosignature by its key" in report[configured.cosigner.verifier.label][
            "error"]
    finally:
        await server.close()
