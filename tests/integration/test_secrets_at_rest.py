"""Secrets at rest: the config and the SQLite database (with its -wal and -shm) are
created owner-only, and the gateway refuses to start while group or others can read
one, naming the chmod to run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.settings import load_settings
from tests.helpers import bearer, ops_token, verified_tenant

ROOT = Path(__file__).resolve().parents[2]
DB_FILES = ("vpngw.db", "vpngw.db-wal", "vpngw.db-shm")


def vpngw(*args: str) -> subprocess.CompletedProcess[str]:
    # A refused start exits at once; a started server would outlive the timeout.
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          text=True, timeout=30, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most systems run with (022): files are world-readable unless made not."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def data_dir(tmp_path: Path, usual_umask: None) -> Path:
    data = tmp_path / "data"
    init = vpngw("init", "--data-dir", str(data), "--endpoint", "vpn.test:51820", "--json")
    assert init.returncode == 0, init.stderr
    return data


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_init_creates_the_config_and_the_database_owner_only(data_dir: Path) -> None:
    assert mode(data_dir / "gateway.toml") == 0o600
    assert mode(data_dir / "vpngw.db") == 0o600


async def test_the_database_and_its_wal_and_shm_stay_owner_only_while_serving(
    data_dir: Path, aiohttp_client: Any, usual_umask: None
) -> None:
    (data_dir / "vpngw.db").unlink()  # a fresh database, made by the server itself
    client = await aiohttp_client(create_app(load_settings(data_dir, environ={})))
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops)
    resp = await client.post("/v1/peers", json={"name": "laptop"}, headers=bearer(token))
    assert resp.status == 201
    for name in (*DB_FILES, "payload-keys.json", "payload-keys.json.lock"):
        assert mode(data_dir / name) == 0o600, name


@pytest.mark.parametrize(("name", "exposed"), [
    ("gateway.toml", 0o644), ("vpngw.db", 0o640),
    ("vpngw.db-wal", 0o604), ("vpngw.db-shm", 0o644), ("payload-keys.json", 0o640),
])
def test_serve_refuses_to_start_while_a_secret_file_is_readable_by_others(
    data_dir: Path, name: str, exposed: int
) -> None:
    path = data_dir / name
    path.touch()
    path.chmod(exposed)
    refused = vpngw("serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{free_port()}")
    assert refused.returncode == 1, refused.stderr
    assert f"chmod 600 {path}" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    # The ops commands read the same files: refused the same way.
    listing = vpngw("tenant", "list", "--data-dir", str(data_dir), "--json")
    assert listing.returncode == 1 and f"chmod 600 {path}" in listing.stderr
    path.chmod(0o600)
    assert json.loads(vpngw("tenant", "list", "--data-dir", str(data_dir), "--json").stdout) == []


def test_serve_names_the_chmod_for_an_exposed_key_file_too(data_dir: Path) -> None:
    key = data_dir / "log-signing.key"
    key.chmod(0o644)
    refused = vpngw("serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{free_port()}")
    assert refused.returncode == 1 and f"chmod 600 {key}" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_rewritten_config_stays_owner_only(tmp_path: Path, usual_umask: None) -> None:
    from gateway.cli import write_config

    path = tmp_path / "gateway.toml"
    write_config(path, {"server": {"listen": "127.0.0.1:8080"}})
    write_config(path, {"server": {"listen": "127.0.0.1:8081"}})
    assert mode(path) == 0o600 and "8081" in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["gateway.toml"]  # no temp file left
