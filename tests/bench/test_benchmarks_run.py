"""Every benchmark still runs: each bench/*.py on small sizes must finish and print its
table. No timing is checked here (figures come from full runs on a quiet machine)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.components import require_or_skip
from tests.conftest import PG_ADMIN_URL

ROOT = Path(__file__).resolve().parents[2]

QUICK = {
    "provision": ["--peers", "300", "--concurrency", "8", "--page-samples", "5",
                  "--processes", "2"],
    "dataplane": ["--peers", "200", "--repeat", "1"],
    "audit": ["--sizes", "3000", "--append", "3000", "--batches", "1000", "--samples", "10",
              "--repeat", "1", "--sealed"],
    "regulator": ["--sizes", "3000", "--queries", "5", "--signatures", "200"],
    "soak": ["--duration", "8", "--window", "4", "--calibrate", "3", "--initial-peers", "20"],
    "egress": ["--elements", "300", "--seconds", "0.5", "--changes", "3", "--log-size", "3000",
               "--queries", "5"],
    "liveness": ["--sizes", "100", "--samples", "5"],
    "agents": ["--peers", "300", "--agents", "1", "2", "--trials", "4", "--events", "400",
               "--repeat", "1"],
    # Two agent counts on PostgreSQL: each needs its own empty database.
    "agents-postgres": ["--peers", "300", "--agents", "1", "2", "--trials", "4",
                        "--events", "400", "--repeat", "1", "--postgres", PG_ADMIN_URL],
}
NEEDS_ROOT = {"dataplane", "egress", "agents", "agents-postgres", "liveness"}
NEEDS_POSTGRES = {"agents-postgres"}


def test_every_benchmark_is_listed() -> None:
    # handshake: bench.liveness's probe; httpfloor: bench.provision's HTTP-only server
    helpers = {"__init__", "common", "handshake", "httpfloor"}
    scripts = {p.stem for p in (ROOT / "bench").glob("*.py")} - helpers
    listed = {name.split("-")[0] for name in QUICK}
    assert scripts == listed, "give a new benchmark its quick arguments here"


@pytest.mark.parametrize("name", sorted(QUICK))
def test_benchmark_completes_and_prints_its_table(name: str, request: pytest.FixtureRequest
                                                  ) -> None:
    if name in NEEDS_ROOT:
        require_or_skip(os.geteuid() == 0, f"bench.{name} needs root (namespaces)")
    if name in NEEDS_POSTGRES:
        require_or_skip(request.getfixturevalue("pg_available"),
                        f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    script = name.split("-")[0]
    done = subprocess.run([sys.executable, "-m", f"bench.{script}", *QUICK[name]], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    # print_table underlines each header with dashes: at least one table was printed.
    assert any(line.startswith("---") for line in done.stdout.splitlines()), done.stdout[-2000:]
