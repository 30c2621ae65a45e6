"""Witnessed checkpoints end to end: two `vpngw-regulator witness serve` processes on
loopback, real `vpngw serve` gateways, and the regulator CLI's quorum checks.

One module-scoped setup; the tests run in file order and build on each other's state
(the witnesses only ever move forward).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest

from gateway.audit.cosignature import CosignerVerifier, open_witnessed_checkpoint
from gateway.audit.note import Ed25519NoteSigner, Ed25519NoteVerifier
from gateway.keyfiles import LOG_KEY, load_keys
from gateway.witness.protocol import SIZE_CONTENT_TYPE
from tests.components import require_or_skip

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ORIGIN = "vpngw.example/log"


def run(module: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=60, env=ENV, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def regulator(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("gateway.regulator.cli", *args, check=check)


def http(method: str, url: str, *, token: str | None = None, body: bytes | None = None,
         content_type: str = "application/json") -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, data=body, method=method)  # noqa: S310 (loopback)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


@dataclass
class WitnessProcess:
    name: str
    key: Path
    state: Path
    log_vkey: str
    port: int = 0
    vkey: str = ""
    proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.regulator.cli", "witness", "serve",
             "--key", str(self.key), "--log-vkey", self.log_vkey,
             "--listen", f"127.0.0.1:{self.port}", "--state", str(self.state)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT)
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        seen = []
        for line in out:
            seen.append(line)
            if line.startswith("witness vkey "):
                self.vkey = line.split()[2]
            if line.startswith("listening on "):
                self.port = int(line.split(":")[2].split("/")[0])
                return
        raise AssertionError("witness did not start:\n" + "".join(seen))

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None


@dataclass
class GatewayProcess:
    data: Path
    ops_token: str
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             token: str | None = None) -> Any:
        status, _, raw = http(method, self.url + path, token=token or self.ops_token,
                              body=json.dumps(body).encode() if body is not None else None)
        assert status in (200, 201), raw
        return json.loads(raw)

    def checkpoint(self) -> str:
        status, _, raw = http("GET", self.url + "/regulator/v1/checkpoint")
        assert status == 200
        return raw.decode()

    def start(self) -> None:
        with socket_port() as port:
            self.port = port
        self.log_path = self.data.parent / f"serve-{self.data.name}.log"
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(self.data),
                 "--listen", f"127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=ENV)
        deadline = time.monotonic() + 60
        while http_ok(self.url + "/healthz") is False:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(self.log_path.read_text())
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):  # noqa: S310 (loopback)
            return True
    except (urllib.error.URLError, ConnectionError):
        return False


class socket_port:
    """A free loopback port (closed again before use)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        return None


def init_gateway(data: Path, witnesses: list[WitnessProcess], *, log_key_from: Path | None = None
                 ) -> GatewayProcess:
    init = run("gateway.cli", "init", "--data-dir", str(data), "--pool", "10.71.0.0/24",
               "--endpoint", "vpn.test:51820", "--json")
    if log_key_from is not None:
        # The same log key with another history: a fork of the first log.
        shutil.copy(log_key_from / LOG_KEY, data / LOG_KEY)
    entries = ", ".join(f'"{w.url} {w.vkey}"' for w in witnesses)
    with (data / "gateway.toml").open("a") as fh:
        fh.write(f"\n[witness]\nwitnesses = [{entries}]\ninterval_seconds = 0.5\n"
                 "answer_wait_seconds = 20.0\ntimeout_seconds = 5.0\n")
    return GatewayProcess(data, json.loads(init.stdout)["ops_token"])


def add_tenant(gw: GatewayProcess, n: int) -> dict[str, Any]:
    tenant: dict[str, Any] = gw.call("POST", "/ops/v1/tenants", {
        "legal_name": f"Tenant {n} Ltd", "registration_number": f"RC-{n}", "tax_id": f"T-{n}",
        "country": "PK", "contact_email": f"it{n}@example.com"})
    return tenant


@dataclass
class Setup:
    base: Path
    log_vkey: str
    w1: WitnessProcess
    w2: WitnessProcess
    gw: GatewayProcess
    stranger_vkey: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("witnessed")
    data = base / "data"
    # The log key must exist before the witnesses start (they pin its vkey): init first,
    # then start the witnesses, then write their URLs into the settings.
    init = run("gateway.cli", "init", "--data-dir", str(data), "--pool", "10.71.0.0/24",
               "--endpoint", "vpn.test:51820", "--json")
    log_vkey = Ed25519NoteSigner(ORIGIN, load_keys(data).log).vkey()
    witnesses = []
    for name in ("w1", "w2", "stranger"):
        key = base / f"{name}.key"
        out = regulator("witness", "keygen", "--name", f"witness.test/{name}", "--out", str(key))
        assert "witness vkey: witness.test/" in out.stdout
        witnesses.append(WitnessProcess(name, key, base / f"{name}-state", log_vkey))
    w1, w2, _ = witnesses
    for w in (w1, w2):
        w.start()
    stranger_vkey = (base / "stranger.key.vkey").read_text().strip()
    entries = ", ".join(f'"{w.url} {w.vkey}"' for w in (w1, w2))
    with (data / "gateway.toml").open("a") as fh:
        fh.write(f"\n[witness]\nwitnesses = [{entries}]\ninterval_seconds = 0.5\n"
                 "answer_wait_seconds = 20.0\ntimeout_seconds = 5.0\n")
    gw = GatewayProcess(data, json.loads(init.stdout)["ops_token"])
    gw.start()
    try:
        yield Setup(base, log_vkey, w1, w2, gw, stranger_vkey)
    finally:
        gw.stop()
        for w in (w1, w2):
            w.stop()


def verifiers(*ws: WitnessProcess) -> list[CosignerVerifier]:
    return [CosignerVerifier.from_vkey(w.vkey) for w in ws]


def test_served_checkpoints_carry_both_cosignatures(setup: Setup) -> None:
    add_tenant(setup.gw, 1)
    note = setup.gw.checkpoint()
    opened = open_witnessed_checkpoint(note, Ed25519NoteVerifier.from_vkey(setup.log_vkey),
                                       verifiers(setup.w1, setup.w2))
    assert opened.signed.checkpoint.size > 0
    assert sorted(c.name for c in opened.cosignatures) == ["witness.test/w1",
                                                           "witness.test/w2"]
    assert opened.problems == ()
    now = time.time()
    assert all(now - 300 < c.timestamp <= now + 5 for c in opened.cosignatures)
    # Readiness shows each witness and how far behind it is.
    status, _, raw = http("GET", setup.gw.url + "/readyz")
    ready = json.loads(raw)
    assert status == 200 and set(ready["witnesses"]) == {
        v.label for v in verifiers(setup.w1, setup.w2)}
    _, _, metrics = http("GET", setup.gw.url + "/metrics")
    assert b"# TYPE vpngw_witness_lag_entries gauge" in metrics
    assert metrics.count(b"vpngw_witness_lag_entries{witness=") == 2


def test_the_cli_checks_the_quorum(setup: Setup) -> None:
    state = setup.base / "cli-state.json"
    common = ["checkpoint", "--url", setup.gw.url, "--vkey", setup.log_vkey,
              "--state", str(state)]
    both = ["--witness", setup.w1.vkey, "--witness", setup.w2.vkey]
    ok = regulator(*common, *both, "--quorum", "2")
    assert "witnesses" in ok.stdout and "2 of 2 witness(es) cosigned" in ok.stdout
    # A witness that never saw this log: quorum 3 of 3 fails and names it.
    failed = regulator(*common, *both, "--witness", setup.stranger_vkey, "--json", check=False)
    assert failed.returncode == 1
    doc = json.loads(failed.stdout)
    stranger = CosignerVerifier.from_vkey(setup.stranger_vkey).label
    assert doc["ok"] is False and stranger in doc["error"] and "2 of the required 3" in doc["error"]
    assert stranger in failed.stderr
    # 2 of the 3 is enough when the quorum says so.
    regulator(*common, *both, "--witness", setup.stranger_vkey, "--quorum", "2")
    bad = regulator(*common, "--quorum", "2", check=False)
    assert bad.returncode == 2 and "--quorum 2 needs at least 2 --witness" in bad.stderr
    bad = regulator(*common, "--witness", setup.log_vkey, check=False)
    assert bad.returncode == 2 and "type 0x04" in bad.stderr


def test_regulator_answers_carry_the_cosignatures(setup: Setup) -> None:
    gw, work = setup.gw, setup.base / "regulator"
    tenant = add_tenant(gw, 2)
    regulator("keygen", "--out", str(work), "--keyid", "pta-witness-1")
    gw.call("POST", "/ops/v1/regulator-keys", json.loads((work / "regulator.json").read_text()))
    pins = setup.base / "pins.json"
    regulator("keys", "--url", gw.url, "--save", str(pins))
    now = datetime.now(UTC)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    saved = setup.base / "answer.json"
    both = ["--witness", setup.w1.vkey, "--witness", setup.w2.vkey]
    answered = regulator(
        "query", "--url", gw.url, "--key", str(work / "regulator.key"), "--keyid",
        "pta-witness-1", "--pin-keys", str(pins), "--state", str(setup.base / "q-state.json"),
        "--kind", "activity.tenant", "--tenant", tenant["id"],
        "--from", (now - timedelta(days=1)).strftime(stamp), "--to", now.strftime(stamp),
        "--request-country", "PK", "--request-authority", "PTA", "--request-number", "W-1",
        "--auth-reference", "PTA/LI/W/1", "--auth-basis", "PECA 2016 s.32",
        "--auth-from", (now - timedelta(days=2)).strftime(stamp),
        "--auth-until", (now + timedelta(days=2)).strftime(stamp),
        "--save", str(saved), *both, "--quorum", "2", "--json")
    doc = json.loads(answered.stdout)
    assert doc["ok"] is True
    assert {c["check"] for c in doc["checks"]} >= {"witnesses", "inclusion", "consistency"}
    regulator("verify", str(saved), "--pin-keys", str(pins), *both)
    lacking = regulator("verify", str(saved), "--pin-keys", str(pins), "--witness",
                        setup.stranger_vkey, check=False)
    assert lacking.returncode == 1 and "missing: witness.test/stranger+" in lacking.stderr


def test_a_witness_down_never_stops_the_log_and_keeps_its_state(setup: Setup) -> None:
    gw, w2 = setup.gw, setup.w2
    before = open_witnessed_checkpoint(gw.checkpoint(), Ed25519NoteVerifier.from_vkey(
        setup.log_vkey), verifiers(setup.w1, w2)).signed.checkpoint.size
    w2.stop()
    try:
        add_tenant(gw, 3)  # the log goes on
        # Checkpoints are signed on a cadence (audit.checkpoint_seconds), so the one
        # covering the new entries comes within about a second, not with the commit.
        deadline = time.monotonic() + 10
        while True:
            note = gw.checkpoint()
            opened = open_witnessed_checkpoint(
                note, Ed25519NoteVerifier.from_vkey(setup.log_vkey), verifiers(setup.w1, w2))
            if opened.signed.checkpoint.size > before and opened.cosignatures:
                break
            assert time.monotonic() < deadline, "no newer cosigned checkpoint was served"
            time.sleep(0.1)
        _witness_down_is_reported(setup, before, opened)
    finally:
        if not w2.running():
            w2.start()
    _restarted_witness_catches_up(setup, before, note)


def _witness_down_is_reported(setup: Setup, before: int, opened: Any) -> None:
    gw, w2 = setup.gw, setup.w2
    assert [c.name for c in opened.cosignatures] == ["witness.test/w1"]
    status, _, raw = http("GET", gw.url + "/readyz")
    report = json.loads(raw)
    assert status == 200 and report["status"] == "ready"
    down = report["witnesses"][CosignerVerifier.from_vkey(w2.vkey).label]
    assert down["error"] and down["lag_entries"] > 0
    _, _, metrics = http("GET", gw.url + "/metrics")
    lag_line = next(line for line in metrics.decode().splitlines()
                    if line.startswith("vpngw_witness_lag_entries{witness=\"witness.test/w2"))
    assert float(lag_line.split()[-1]) > 0



def _restarted_witness_catches_up(setup: Setup, before: int, note: str) -> None:
    gw, w2 = setup.gw, setup.w2
    # Restarted on its state directory (same port), it still holds the size it cosigned.
    status, content_type, body = http(
        "POST", w2.url + "/add-checkpoint", body=b"old 0\n\n" + note.encode(),
        content_type="text/plain")
    assert (status, content_type) == (409, SIZE_CONTENT_TYPE)
    assert int(body) >= before
    # The gateway's background rounds bring it up to date from there.
    label = CosignerVerifier.from_vkey(w2.vkey).label
    deadline = time.monotonic() + 60
    while json.loads(http("GET", gw.url + "/readyz")[2])["witnesses"][label]["error"]:
        assert time.monotonic() < deadline, "the restarted witness was never brought up to date"
        time.sleep(0.2)
    caught_up = open_witnessed_checkpoint(gw.checkpoint(), Ed25519NoteVerifier.from_vkey(
        setup.log_vkey), verifiers(setup.w1, w2))
    assert len(caught_up.cosignatures) == 2


def test_a_fork_with_the_same_log_key_is_refused(setup: Setup) -> None:
    fork_data = setup.base / "fork"
    fork = init_gateway(fork_data, [setup.w1], log_key_from=setup.gw.data)
    fork.start()
    try:
        # Another history, longer than the one the witness saw.
        for n in range(40):
            add_tenant(fork, 100 + n)
        note = fork.checkpoint()
        log_key = Ed25519NoteVerifier.from_vkey(setup.log_vkey)
        opened = open_witnessed_checkpoint(note, log_key, verifiers(setup.w1))
        assert opened.signed.checkpoint.size > 0  # the log key signs it...
        assert opened.cosignatures == ()  # ...but the witness refused to cosign it
        report = json.loads(http("GET", fork.url + "/readyz")[2])
        detail = report["witnesses"][CosignerVerifier.from_vkey(setup.w1.vkey).label]["error"]
        assert "422" in detail or "larger than this log" in detail
        refused = regulator("checkpoint", "--url", fork.url, "--vkey", setup.log_vkey,
                            "--state", str(setup.base / "fork-state.json"),
                            "--witness", setup.w1.vkey, check=False)
        assert refused.returncode == 1 and "missing: witness.test/w1+" in refused.stderr
    finally:
        fork.stop()
    # The honest log is still cosigned by that witness.
    opened = open_witnessed_checkpoint(setup.gw.checkpoint(), Ed25519NoteVerifier.from_vkey(
        setup.log_vkey), verifiers(setup.w1))
    assert len(opened.cosignatures) == 1


def test_go_sumdb_note_accepts_the_cosigned_checkpoint(setup: Setup) -> None:
    go = shutil.which("go")
    gopath = Path("/usr/share/gocode/src/golang.org/x/mod/sumdb/note")
    require_or_skip(go is not None and gopath.is_dir(),
                    "needs Debian's golang-go and golang-golang-x-mod-dev")
    assert go is not None
    program = Path(__file__).with_name("go_note_check.go")
    work = setup.base / "go"
    work.mkdir(exist_ok=True)
    note_file = work / "checkpoint.note"
    note_file.write_text(setup.gw.checkpoint())
    env = {**os.environ, "GOPATH": "/usr/share/gocode", "GO111MODULE": "off",
           "GOFLAGS": "", "GOCACHE": str(work / "cache"), "GOTOOLCHAIN": "local"}
    proc = subprocess.run(
        [go, "run", str(program), str(note_file), setup.log_vkey, setup.w1.vkey, setup.w2.vkey],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "log signature ok: " + ORIGIN in proc.stdout
    assert "cosignature ok: witness.test/w1" in proc.stdout
    assert "cosignature ok: witness.test/w2" in proc.stdout
    # Tampered: Go refuses it.
    tampered = note_file.read_text().replace(ORIGIN + "\n", ORIGIN + "\n1", 1)
    note_file.write_text(tampered)
    proc = subprocess.run(
        [go, "run", str(program), str(note_file), setup.log_vkey, setup.w1.vkey],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode != 0
