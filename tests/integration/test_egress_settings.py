"""Impossible egress settings stop `vpngw init` and `vpngw serve` with a message naming the
numbers and what to change, before anything is written, logged or applied."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import write_config
from tests.components import require_or_skip


def vpngw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def init(data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return vpngw("init", "--data-dir", str(data), "--json", "--endpoint", "vpn.test:51820",
                 *extra)


def logged_types(data: Path) -> list[str]:
    with sqlite3.connect(data / "vpngw.db") as db:
        rows = db.execute("SELECT type FROM log_entries UNION ALL SELECT 'outbox' FROM outbox")
        return [r[0] for r in rows]


def test_init_refuses_a_pool_the_addresses_cannot_cover(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = init(data, "--pool", "10.100.0.0/16", "--egress-interface", "lo",
                "--egress-address", "203.0.113.7")
    assert done.returncode == 1
    for expected in ("65536", "64-port", "egress.addresses", "/23"):
        assert expected in done.stderr, done.stderr
    assert not (data / "gateway.toml").exists()  # nothing half-made: run init again


def test_init_picks_the_pool_its_addresses_cover(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = init(data, "--egress-interface", "lo", *(
        a for i in range(5) for a in ("--egress-address", f"203.0.113.{i + 1}")))
    assert done.returncode == 0, done.stderr
    config = (data / "gateway.toml").read_text()
    assert 'pools = ["10.100.0.0/20", "fd00:100::/64"]' in config  # 5 x 1008 covers 4096


@pytest.mark.parametrize(
    ("egress", "network", "message"),
    [
        ({"block_size": 32}, {}, "below the minimum of 64"),
        ({"block_size": 200}, {}, "fewer than the 512 addresses of pool 10.100.0.0/23"),
        ({"ports": "60000-60100"}, {}, "60000-60100"),
        ({"ports": "1024"}, {}, "egress.ports must be 'first-last'"),
        ({"blocked": ["10.0.0.0/33"]}, {}, "egress.blocked"),
        ({"addresses": ["10.100.0.9"]}, {}, "inside the tunnel pool"),
        ({"interface": "nosuch0"}, {}, "does not exist in this network namespace"),
        ({"interface": "lo"}, {"pools": ["127.0.0.0/24"]},
         "overlaps 127.0.0.0/8 on egress interface lo"),
    ],
)
def test_serve_refuses_impossible_settings_before_starting(
    tmp_path: Path, egress: dict[str, Any], network: dict[str, Any], message: str
) -> None:
    require_or_skip(Path("/sys/class/net/lo").exists(), "needs a loopback interface")
    data = tmp_path / "data"
    assert init(data, "--egress-interface", "lo", "--egress-address", "203.0.113.7",
                "--wireguard", "userspace", "--interface", "vpngwbad0").returncode == 0
    config = data / "gateway.toml"
    sections = tomllib.loads(config.read_text())
    sections["egress"].update(egress)
    sections["network"].update(network)
    write_config(config, sections)
    before = logged_types(data)
    done = vpngw("serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{free_port()}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert logged_types(data) == before  # no egress.configured, nothing else either
    assert not Path("/var/run/wireguard/vpngwbad0.sock").exists()  # no interface started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
