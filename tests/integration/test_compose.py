"""docker-compose.yml (PostgreSQL, control plane, two agents) is a valid compose file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.components import require_or_skip

ROOT = Path(__file__).resolve().parents[2]


def compose(*args: str) -> str:
    done = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), *args],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_compose_file_is_valid_and_runs_two_agents_against_one_control_plane() -> None:
    require_or_skip(shutil.which("docker-compose") is not None,
                    "docker-compose is not installed (Debian package docker-compose)")
    compose("config", "-q")
    services = set(compose("config", "--services").split())
    assert {"postgres", "control", "agent-a", "agent-b"} <= services
    rendered = compose("config")
    assert rendered.count("vpngw agent --control http://control:8080") == 2
    assert "--wireguard off" in rendered
    # The control plane listens beyond loopback in plain HTTP only because it says so.
    assert "VPNGW_SERVER_ALLOW_PLAIN_HTTP: \"true\"" in rendered or (
        "VPNGW_SERVER_ALLOW_PLAIN_HTTP: 'true'" in rendered), rendered
