"""schemathesis against the served /openapi.json: no 5xx, and every error is problem+json.

A real `vpngw serve` on SQLite over a socket, with an ops and a tenant token (and a
tenant, a peer and a link for the generator to find). Every operation gets schema-valid
and schema-violating cases, a fixed number each and derandomised, so a run is bounded
and the same on every machine: VPNGW_FUZZ_EXAMPLES (default 25) per operation and mode.
Failures are collected, not shrunk, and reported together with a curl line each and the
server's log of the 5xx.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("VPNGW_FUZZ_EXAMPLES", "25"))
PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Server:
    url: str
    ops_token: str
    tenant_token: str
    log: Path
    # Path parameters naming real objects, so cases also reach past the 404s. The ops
    # ones belong to a second tenant: suspending or terminating it leaves the tenant
    # token used for /v1 working.
    known: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, token: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (localhost)
            return json.loads(resp.read() or b"null")

    def token_for(self, path: str) -> str:
        return self.ops_token if path.startswith("/ops/") else self.tenant_token


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("fuzz")
    data, log = base / "data", base / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    init = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "init", "--data-dir", str(data), "--endpoint",
         "vpn.test:51820", "--json"], capture_output=True, text=True, timeout=60, env=env,
        check=True)
    ops = json.loads(init.stdout)["ops_token"]
    url = f"http://127.0.0.1:{_free_port()}"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(data), "--listen",
             url.removeprefix("http://")], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=1):  # noqa: S310
                    break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(log.read_text()) from None
                time.sleep(0.1)
        booting = Server(url, ops, "", log)
        tenant = booting.call("POST", "/ops/v1/tenants", ops, {
            "legal_name": "Fuzz Bank Ltd", "registration_number": "RC-F", "tax_id": "NTN-F",
            "country": "PK", "contact_email": "it@fuzz.example"})
        booting.call("POST", f"/ops/v1/tenants/{tenant['id']}/verification", ops,
                     {"evidence_reference": "KYC-F"})
        token = booting.call("POST", f"/ops/v1/tenants/{tenant['id']}/tokens", ops)["token"]
        peer = booting.call("POST", "/v1/peers", token, {"name": "fuzz-laptop"})
        link = booting.call("POST", f"/v1/peers/{peer['id']}/links", token)["url"]
        other = booting.call("POST", "/ops/v1/tenants", ops, {
            "legal_name": "Other Bank Ltd", "registration_number": "RC-O", "tax_id": "NTN-O",
            "country": "PK", "contact_email": "it@other.example"})
        other_token = booting.call("POST", f"/ops/v1/tenants/{other['id']}/tokens", ops)["id"]
        booting.call("POST", "/ops/v1/regulator-keys", ops, {
            "keyid": "fuzz-key", "label": "fuzz",
            "public_key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="})
        yield Server(url, ops, token, log, known={
            "tenant_id": other["id"], "token_id": other_token, "peer_id": peer["id"],
            "token": link.rsplit("/", 1)[1], "keyid": "fuzz-key"})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
            proc.kill()
            proc.wait()


def _defect(status: int, content_type: str) -> str | None:
    if status >= 500:
        return f"{status} (server error)"
    if status >= 400 and content_type.split(";")[0].strip() != PROBLEM:
        return f"{status} with Content-Type {content_type or '(none)'}, not {PROBLEM}"
    return None


def _fuzz(server: Server, operation: Any, mode: schemathesis.GenerationMode,
          failures: list[str], session: requests.Session, known: dict[str, str] | None) -> int:
    """Send EXAMPLES cases of one operation in one mode; return how many were sent."""
    headers = {"Authorization": f"Bearer {server.token_for(operation.path)}"}
    label = mode.value if known is None else "known ids"
    seen: set[str] = set()
    sent = 0

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=known))
    def send(case: schemathesis.Case) -> None:
        nonlocal sent
        response = case.call(base_url=server.url, headers=headers, session=session, timeout=10)
        sent += 1
        defect = _defect(response.status_code, response.headers.get("content-type", [""])[0])
        # One report per operation, mode and kind of defect is enough to act on.
        if defect is not None and defect not in seen:
            seen.add(defect)
            failures.append(f"{operation.label} [{label}]: {defect}\n"
                            f"  {case.as_curl_command(headers=headers)}\n"
                            f"  -> {response.text[:300]}")

    # No negative case exists for an operation without inputs (GET /healthz).
    with contextlib.suppress(Unsatisfiable):
        send()
    return sent


def test_no_operation_answers_5xx_or_an_error_that_is_not_problem_json(server: Server) -> None:
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    failures: list[str] = []
    sent = 0
    started = time.monotonic()
    runs: list[tuple[Any, schemathesis.GenerationMode, dict[str, str] | None]] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        runs += [(operation, mode, None) for mode in schemathesis.GenerationMode]
        names = {p.name for p in operation.path_parameters}
        if names and names <= set(server.known):
            runs.append((operation, schemathesis.GenerationMode.POSITIVE,
                         {n: server.known[n] for n in names}))
    # Real objects last, and the runs that end them (revocation, termination) after the
    # rest, so the other operations still find them alive.
    runs.sort(key=lambda r: (r[2] is not None, r[0].method.upper() == "DELETE"
                             or r[0].path.endswith("/termination")))
    with requests.Session() as session:
        for operation, mode, known in runs:
            began = time.monotonic()
            count = _fuzz(server, operation, mode, failures, session, known)
            sent += count
            print(f"fuzz: {operation.label} [{mode.value}{' known ids' if known else ''}] "
                  f"{count} requests in {time.monotonic() - began:.1f} s")
    print(f"fuzz: {sent} requests in {time.monotonic() - started:.0f} s, "
          f"{len(failures)} distinct failures")
    if failures:
        errors = [line for line in server.log.read_text().splitlines()
                  if '"level": "error"' in line or "Traceback" in line]
        pytest.fail("\n\n".join(failures) + "\n\nserver errors:\n" + "\n".join(errors[-20:]))
