"""`vpngw approval …` and the CLI's gated commands, with two-person control on."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.approvals.service import Approvals
from gateway.clock import SystemClock
from gateway.commands import Commands
from gateway.db import Database
from gateway.settings import load_settings
from provisioning import tokens
from tests.integration.test_cli import data_dir  # noqa: F401  (fixture reused)

ME = f"cli:{getpass.getuser()}"


def vpngw(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VPNGW_APPROVALS_REQUIRED": "true"}
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          text=True, timeout=60, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return proc


def as_json(*args: str) -> Any:
    return json.loads(vpngw(*args, "--json").stdout)


async def test_cli_requests_wait_for_another_principal(data_dir: Path) -> None:  # noqa: F811
    d = ["--data-dir", str(data_dir)]
    config = (data_dir / "gateway.toml").read_text()
    assert "[approvals]\nrequired = true" in config  # vpngw init writes it on

    asked = as_json("token", "issue-ops", *d, "--label", "bob")
    pending = as_json("approval", "list", *d)
    assert [(p["id"], p["kind"], p["requested_by"]) for p in pending] == [
        (asked["approval_id"], "ops_token.issue", ME)]
    own = vpngw("approval", "approve", *d, asked["approval_id"], check=False)
    assert own.returncode == 1 and "different ops principal" in own.stderr

    # Another principal (here the first ops token, as the API would act) approves.
    settings = load_settings(data_dir)
    db = Database(settings.database_url, pool_size=2)
    try:
        commands = Commands(db=db, clock=SystemClock(), settings=settings)
        approvals = Approvals(commands=commands, required=True, expiry_hours=24)
        async with db.read() as conn:
            assert await tokens.authenticate(conn, asked["token"]) is None  # not yet
            first = next(t for t in await tokens.list_tokens(conn) if t.label != "bob")
        await approvals.grant(asked["approval_id"], actor=f"token:{first.token_id}")
        async with db.read() as conn:
            assert await tokens.authenticate(conn, asked["token"]) is not None
    finally:
        await db.dispose()
    granted = as_json("approval", "list", *d, "--status", "granted")
    assert [g["decided_by"] for g in granted] == [f"token:{first.token_id}"]
    shown = vpngw("approval", "list", *d, "--all").stdout
    assert "ops_token.issue" in shown and "label=bob" in shown

    # Disabling an ops user is a request too; its requester may withdraw it.
    invited = as_json("user", "invite", *d, "--email", "ops2@example.com", "--role", "ops")
    out = vpngw("user", "disable", *d, invited["user_id"], "--json")
    assert json.loads(out.stdout)["status"] == "invited"  # unchanged for now
    approval_id = out.stderr.split("approval ")[1].split()[0]
    withdrawn = as_json("approval", "reject", *d, approval_id, "--reason", "typo")
    assert (withdrawn["status"], withdrawn["decided_by"], withdrawn["reason"]) == (
        "rejected", ME, "typo")
    again = vpngw("approval", "approve", *d, approval_id, check=False)
    assert again.returncode == 1 and "already rejected" in again.stderr
    missing = vpngw("approval", "show", *d, "01936a5e-8f3c-7d2a-9b1e-4c5d6e7f8a9b", check=False)
    assert missing.returncode == 1 and "no approval" in missing.stderr
    users = as_json("user", "list", *d)
    assert [u["status"] for u in users] == ["invited"]

    # With no ops principal left to approve (every ops token revoked, no active ops
    # user), the CLI issues one directly, as init does.
    for token in as_json("token", "list", *d):
        if token["role"] == "ops":
            vpngw("token", "revoke", *d, token["id"])
    direct = as_json("token", "issue-ops", *d, "--label", "recovery")
    assert direct["token"].startswith("vgw_o_") and "approval_id" not in direct
