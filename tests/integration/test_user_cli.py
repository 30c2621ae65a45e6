"""`vpngw user …`: the first ops user is invited from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli import data_dir, vpngw  # noqa: F401  (fixture reused)


def test_init_says_how_to_create_the_first_ops_user(tmp_path: Path) -> None:
    out = vpngw("init", "--data-dir", str(tmp_path / "d"), "--endpoint", "vpn.test:51820")
    assert "First ops token" in out.stdout
    assert "vpngw user invite" in out.stdout and "--role ops" in out.stdout


def test_user_invite_list_and_disable(data_dir: Path) -> None:  # noqa: F811
    d = ["--data-dir", str(data_dir)]
    invited = json.loads(vpngw("user", "invite", *d, "--email", "Ops@Example.com",
                               "--role", "ops", "--json").stdout)
    assert invited["email"] == "ops@example.com" and invited["role"] == "ops"
    assert "/invitations/" in invited["url"]
    listed = json.loads(vpngw("user", "list", *d, "--json").stdout)
    assert [(u["email"], u["status"]) for u in listed] == [("ops@example.com", "invited")]
    refused = vpngw("user", "invite", *d, "--email", "a@b.example", "--role", "tenant",
                    check=False)
    assert refused.returncode == 1 and "tenant_id" in refused.stderr
    unknown_tenant = vpngw("user", "invite", *d, "--email", "ops@example.com", "--role", "tenant",
                      "--tenant", "0190a0b0-0000-7000-8000-000000000000", check=False)
    assert unknown_tenant.returncode == 1 and "no tenant" in unknown_tenant.stderr
    disabled = json.loads(vpngw("user", "disable", *d, invited["user_id"], "--json").stdout)
    assert disabled["status"] == "disabled"
