"""Shared benchmark helpers: a real `vpngw serve` subprocess, RSS, percentiles, tables.

Benchmarks drive the server over HTTP on 127.0.0.1 only, like a client would, and
print tables; they are not tests and assert nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.request import urlopen

import psutil

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


# --- event loop for the load generator ---------------------------------------------------


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Any) -> Any:
    """asyncio.run with uvloop when it is installed (it is not a project dependency)."""
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def machine_note() -> str:
    return (f"{platform.python_implementation()} {platform.python_version()}, "
            f"{os.cpu_count()} CPUs; the load generator ({loop_name()}) runs on the same "
            "machine and shares those CPUs with the server, so throughput is a lower bound")


# --- server subprocess -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """`vpngw init` + `vpngw serve` in a temp data dir on a free loopback port."""

    pools: Sequence[str] = ()
    database_url: str | None = None
    # "off" measures the API alone; "userspace" runs a wireguard-go interface (root only).
    wireguard: str = "off"
    interface: str = ""
    env: dict[str, str] = field(default_factory=dict)
    keep: bool = False
    port: int = field(default_factory=free_port)
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vpngw-bench-")))
    proc: subprocess.Popen[bytes] | None = None
    ops_token: str = ""
    _profiler: subprocess.Popen[bytes] | None = None
    # A further process serving the same data dir and database on its own port.
    _replica: bool = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / (f"serve-{self.port}.log" if self._replica else "serve.log")

    def _env(self) -> dict[str, str]:
        # These servers measure the API; carrying traffic out is bench/egress.py's subject.
        # One operator drives them: two-person control (measured nowhere) is off.
        env = {**os.environ, "VPNGW_EGRESS_ENABLED": "false", "VPNGW_APPROVALS_REQUIRED": "false",
               **self.env}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return env

    def init(self) -> str:
        cmd = [PYTHON, "-m", "gateway.cli", "init", "--data-dir", str(self.data_dir), "--json",
               "--listen", f"127.0.0.1:{self.port}", "--wireguard", self.wireguard]
        if self.interface:
            cmd += ["--interface", self.interface]
        for pool in self.pools:
            cmd += ["--pool", pool]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        out = subprocess.run(cmd, env=self._env(), cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"vpngw init failed ({out.returncode}): {out.stderr.strip()}")
        self.ops_token = json.loads(out.stdout.strip().splitlines()[-1])["ops_token"]
        return self.ops_token

    def replica(self) -> Server:
        """Another `vpngw serve` on this server's data dir and database (PostgreSQL), on a
        port of its own; stopping it leaves the data dir to this one."""
        return Server(pools=self.pools, database_url=self.database_url, env=self.env,
                      keep=True, data_dir=self.data_dir, ops_token=self.ops_token,
                      _replica=True)

    def start(self, *, ready_timeout: float = 60.0) -> None:
        cmd = [PYTHON, "-m", "gateway.cli", "serve", "--data-dir", str(self.data_dir)]
        if self._replica:
            cmd += ["--listen", f"127.0.0.1:{self.port}"]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, env=self._env(), cwd=ROOT, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        try:
            self.wait_ready(ready_timeout)
        except BaseException:
            self._end_process()  # a server that never became ready must not outlive the run
            raise

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"vpngw serve exited with {self.proc.returncode}; "
                                   f"see {self.log_path}:\n{self.tail_log()}")
            with (contextlib.suppress(URLError, OSError, ValueError),
                  urlopen(f"{self.base_url}/readyz", timeout=2) as resp):  # noqa: S310 (http only)
                if resp.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"vpngw serve not ready after {timeout}s:\n{self.tail_log()}")

    def tail_log(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def rss_mb(self) -> float:
        """Resident set size of the server process, in MiB."""
        assert self.proc is not None
        return float(psutil.Process(self.proc.pid).memory_info().rss) / (1 << 20)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return process_cpu_seconds(self.proc.pid)

    # --- profiling (py-spy attaches to the running server) --------------------------------

    def start_profile(self, out: Path, *, rate: int = 250) -> bool:
        """Sample the server with py-spy until stop_profile(); False if py-spy is missing."""
        assert self.proc is not None
        exe = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
        if not Path(exe).exists():
            return False
        out.parent.mkdir(parents=True, exist_ok=True)
        self._profiler = subprocess.Popen(
            [exe, "record", "--pid", str(self.proc.pid), "--rate", str(rate), "--format", "raw",
             "--output", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # let it attach before the load starts
        return self._profiler.poll() is None

    def stop_profile(self) -> None:
        if self._profiler is None:
            return
        self._profiler.send_signal(signal.SIGINT)
        try:
            self._profiler.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._profiler.kill()
        self._profiler = None

    def stop(self) -> None:
        self.stop_profile()
        self._end_process()
        if not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _end_process(self) -> None:
        """SIGINT (the server takes its interface down), then kill after 30 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RssSampler:
    """Peak RSS of a process, sampled in a background thread-free asyncio task."""

    def __init__(self, server: Server, interval: float = 0.5) -> None:
        self.server, self.interval, self.peak = server, interval, 0.0
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.server.rss_mb())
            await asyncio.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self.server.rss_mb())


# --- PostgreSQL scratch databases --------------------------------------------------------


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _pg_exec(admin_url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_reachable(admin_url: str) -> bool:
    try:
        asyncio.run(_pg_exec(admin_url, "SELECT 1"))
    except Exception:
        return False
    return True


def _scratch_database(admin_url: str) -> tuple[str, str]:
    """A fresh database name and its SQLAlchemy asyncpg URL on the admin URL's server."""
    name = f"vpngw_bench_{secrets.token_hex(4)}"
    base = _asyncpg_dsn(admin_url).rsplit("/", 1)[0]
    return name, f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"


@contextlib.contextmanager
def pg_database(admin_url: str, *, keep: bool = False) -> Iterator[str]:
    """A fresh `vpngw_bench_<rand>` database; yields its SQLAlchemy asyncpg URL."""
    name, url = _scratch_database(admin_url)
    asyncio.run(_pg_exec(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield url
    finally:
        if not keep:
            asyncio.run(_pg_exec(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.asynccontextmanager
async def pg_database_async(admin_url: str) -> AsyncIterator[str]:
    """pg_database for a benchmark already inside an event loop."""
    name, url = _scratch_database(admin_url)
    await _pg_exec(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield url
    finally:
        await _pg_exec(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- numbers and tables ------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (numpy's default), p in 0..100; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def fmt(value: Any, digits: int = 1) -> str:
    if isinstance(value, float):
        return "-" if value != value else f"{value:,.{digits}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def print_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """A plain fixed-width table; numbers right-aligned."""
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
              for i, c in enumerate(columns)]
    numeric = [all(isinstance(r.get(c), (int, float)) for r in rows) for c in columns]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w)
                         for v, w, n in zip(values, widths, numeric, strict=True)).rstrip()

    print(f"\n{title}")
    print(line(list(columns)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))


# --- py-spy raw (collapsed) profiles -----------------------------------------------------


def _frame_name(frame: str) -> str:
    """'create_peer (gateway/api/tenant.py:40)' → 'create_peer (gateway/api/tenant.py)'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.replace(str(ROOT) + "/", "")
    return f"{name} ({path})" if path else name


def profile_stacks(path: Path) -> Iterator[tuple[str, int]]:
    """(stack, sample count) of each line of a py-spy raw (collapsed) profile; frames in a
    stack are separated by ";", outermost first."""
    for raw in path.read_text(errors="replace").splitlines():
        stack, _, count_text = raw.rpartition(" ")
        if stack and count_text.isdigit():
            yield stack, int(count_text)


def summarize_profile(path: Path, *, top: int = 20) -> tuple[int, list[tuple[str, int]],
                                                            list[tuple[str, int]]]:
    """(samples, top self-time functions, top inclusive functions) of a py-spy raw file."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for stack, count in profile_stacks(path):
        frames = [_frame_name(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ")] or frames
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    return samples, own.most_common(top), total.most_common(top)


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process so far."""
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def postgres_cpu_seconds() -> float:
    """CPU time of every PostgreSQL server process on this machine (backends, WAL writer,
    checkpointer): the database's share of a run, measured as before/after differences."""
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postmaster"):
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
    return total


def profile_split(path: Path, rules: Sequence[tuple[str, str]]) -> list[tuple[str, float]]:
    """Share of a py-spy raw profile's busy samples per category: a sample counts for the
    first rule whose marker occurs in its stack below the event loop's own frames (the
    server's entry point, aiohttp's run_app, sits at the root of every stack), else for
    "other". Samples waiting in epoll are idle time, not counted."""
    counts: Counter[str] = Counter()
    samples = 0
    for stack, count in profile_stacks(path):
        if stack.rsplit(";", 1)[-1].startswith(("select (selectors.py", "EpollSelector.select")):
            continue
        inner = stack.partition("BaseEventLoop._run_once")[2] or stack
        samples += count
        counts[next((name for name, marker in rules if marker in inner), "other")] += count
    if not samples:
        return []
    order = [name for name, _ in rules] + ["other"]
    return [(name, counts[name] / samples) for name in dict.fromkeys(order) if counts[name]]


def print_profile(path: Path, *, top: int = 20) -> None:
    samples, own, inclusive = summarize_profile(path, top=top)
    if not samples:
        print(f"\n(no profile samples in {path})")
        return
    print_table(f"Profile {path.name}: top {top} by own time ({samples:,} samples)",
                [{"own %": 100.0 * n / samples, "function": f} for f, n in own],
                ("own %", "function"))
    print_table(f"Profile {path.name}: top {top} by inclusive time",
                [{"incl %": 100.0 * n / samples, "function": f} for f, n in inclusive],
                ("incl %", "function"))
