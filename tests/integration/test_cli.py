"""The `vpngw` CLI as an operator runs it: init prints a token, ops commands work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def vpngw(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=60
    )
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return proc


@pytest.fixture
def data_dir(tmp_path: Path, database_url: str) -> Path:
    data = tmp_path / "data"
    extra = [] if database_url.startswith("sqlite") else ["--database-url", database_url]
    out = vpngw(
        "init",
        "--data-dir",
        str(data),
        "--endpoint",
        "vpn.test:51820",
        "--pool",
        "10.50.0.0/24",
        "--json",
        *extra,
    )
    doc = json.loads(out.stdout)
    assert doc["ops_token"].startswith("vgw_o_")
    return data


def test_init_creates_private_files(data_dir: Path) -> None:
    for name in ("wireguard.key", "log-signing.key", "response-signing.key"):
        assert (data_dir / name).stat().st_mode & 0o777 == 0o600
    again = vpngw("init", "--data-dir", str(data_dir), "--json")
    assert json.loads(again.stdout)["ops_token"] is None


def test_tenant_commands(data_dir: Path) -> None:
    d = ["--data-dir", str(data_dir)]
    created = json.loads(
        vpngw(
            "tenant",
            "create",
            *d,
            "--legal-name",
            "Mission of X",
            "--registration-number",
            "M-1",
            "--tax-id",
            "T-1",
            "--country",
            "DE",
            "--contact-email",
            "it@x.example",
            "--json",
        ).stdout
    )
    tid = created["id"]
    vpngw("tenant", "verify", tid, *d, "--evidence", "DOC-7")
    table = vpngw("tenant", "list", *d).stdout
    assert "VERIFIED" not in table and "verified" in table and "Mission of X" in table
    token = json.loads(vpngw("token", "issue", tid, *d, "--json").stdout)
    assert token["token"].startswith("vgw_t_")
    vpngw("tenant", "suspend", tid, *d, "--reason", "late payment")
    shown = vpngw("tenant", "show", tid, *d).stdout
    assert "late payment" in shown and "DOC-7" in shown
    bad = vpngw("tenant", "suspend", tid, *d, "--reason", "again", check=False)
    assert bad.returncode == 1 and "cannot suspend a tenant that is suspended" in bad.stderr
    revoked = vpngw("token", "revoke", token["id"], *d, "--json").stdout
    assert (
        json.loads(revoked)[0]["revoked_at"]
        if revoked.startswith("[")
        else json.loads(revoked)["revoked_at"]
    )


def test_uninitialised_dir_is_a_clear_error(tmp_path: Path) -> None:
    proc = vpngw("tenant", "list", "--data-dir", str(tmp_path / "nope"), check=False)
    assert proc.returncode == 1 and "vpngw init" in proc.stderr


def test_invalid_input_is_reported(data_dir: Path) -> None:
    proc = vpngw(
        "tenant",
        "create",
        "--data-dir",
        str(data_dir),
        "--legal-name",
        "X",
        "--registration-number",
        "R",
        "--tax-id",
        "T",
        "--country",
        "pk",
        "--contact-email",
        "a@b.example",
        check=False,
    )
    assert proc.returncode == 1 and "country" in proc.stderr


def test_gateway_commands(data_dir: Path) -> None:
    d = ["--data-dir", str(data_dir)]
    added = json.loads(vpngw(
        "gateway", "add", "fra-1", *d, "--endpoint", "fra.vpn.test:51820",
        "--egress-address", "198.51.100.20", "--json",
    ).stdout)
    assert added["agent_token"].startswith("vgw_a_") and added["status"] == "active"
    table = vpngw("gateway", "list", *d).stdout
    assert "fra-1" in table and "fra.vpn.test:51820" in table and "vpn.test:51820" in table
    shown = json.loads(vpngw("gateway", "show", added["id"], *d, "--json").stdout)
    assert shown["active_peers"] == 0 and shown["egress"]["addresses"] == ["198.51.100.20"]
    clash = vpngw("gateway", "add", "x", *d, "--endpoint", "x.test:1", "--pool", "10.50.0.0/25",
                  check=False)
    assert clash.returncode == 1 and "overlaps" in clash.stderr
    retired = json.loads(vpngw(
        "gateway", "retire", added["id"], *d, "--reason", "moved", "--json"
    ).stdout)
    assert retired["status"] == "retired"
