"""What an agent keeps on disk: its interface key, the last desired state, the session
tracker, and a bounded queue of observation batches not yet acknowledged."""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

log = structlog.get_logger("vpngw.agent.store")

KEY_FILE = "wireguard.key"
STATE_FILE = "desired-state.json"
SESSIONS_FILE = "sessions.json"
QUEUE_DIR = "outbox"
REFUSED_DIR = "refused"


class AgentStoreError(Exception):
    """The data dir holds something the agent cannot use; the message says what to fix."""


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace `path` with `data`, readable by the owner only, durable on return."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class QueuedBatch:
    path: Path
    batch_id: str
    events: list[dict[str, Any]]


class AgentStore:
    """Files under the data dir (mode 0700); secrets and desired state (preshared keys) 0600.

    The queue holds at most `max_queued_events` events. When it is full, new observations
    are dropped (the oldest are kept, so the log has no holes in the middle of what it
    got), counted in `dropped`, and the agent reports the count as unhealthy.
    """

    def __init__(self, data_dir: Path, *, max_queued_events: int = 100_000) -> None:
        self.root = data_dir
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        self.queue = self.root / QUEUE_DIR
        self.queue.mkdir(exist_ok=True, mode=0o700)
        self.refused = self.root / REFUSED_DIR
        self.refused.mkdir(exist_ok=True, mode=0o700)
        self.max_queued_events = max_queued_events
        self.dropped = 0
        self._queued_events = sum(len(b.events) for b in self.batches())
        self._next = max((self._seq(p) for p in self.queue.glob("*.json")), default=0) + 1

    # --- key -------------------------------------------------------------------------

    def private_key(self) -> bytes:
        """The interface key, generated here on first start; it never leaves this host."""
        path = self.root / KEY_FILE
        if not path.exists():
            raw = X25519PrivateKey.generate().private_bytes(
                Encoding.Raw, PrivateFormat.Raw, NoEncryption()
            )
            write_private(path, base64.b64encode(raw) + b"\n")
            log.info("interface key generated", path=str(path))
        if path.stat().st_mode & 0o077:
            raise AgentStoreError(f"{path} must not be accessible by group or others "
                                  f"(chmod 600 {path})")
        try:
            key = base64.b64decode(path.read_bytes().strip(), validate=True)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise AgentStoreError(f"{path} must hold a base64 X25519 private key (32 bytes)")
        return key

    # --- desired state ---------------------------------------------------------------

    def load_state(self) -> dict[str, Any] | None:
        path = self.root / STATE_FILE
        if not path.exists():
            return None
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded

    def save_state(self, state: Mapping[str, Any]) -> None:
        write_private(self.root / STATE_FILE, json.dumps(state, sort_keys=True).encode())

    def load_sessions(self) -> dict[str, Any]:
        path = self.root / SESSIONS_FILE
        loaded: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        return loaded

    def save_sessions(self, sessions: Mapping[str, Any]) -> None:
        write_private(self.root / SESSIONS_FILE, json.dumps(sessions, sort_keys=True).encode())

    # --- observation queue -----------------------------------------------------------

    @staticmethod
    def _seq(path: Path) -> int:
        return int(path.name.split("-", 1)[0])

    @property
    def queued_events(self) -> int:
        return self._queued_events

    def enqueue(self, events: list[dict[str, Any]]) -> str | None:
        """Persist one batch under a fresh id (kept on every retry); None if dropped."""
        if self._queued_events + len(events) > self.max_queued_events:
            self.dropped += len(events)
            log.error("observation queue full; observations dropped", dropped=len(events),
                      dropped_total=self.dropped, queued=self._queued_events,
                      limit=self.max_queued_events)
            return None
        batch_id = secrets.token_hex(16)
        name = f"{self._next:012d}-{batch_id}.json"
        self._next += 1
        write_private(self.queue / name,
                      json.dumps({"batch_id": batch_id, "events": events}).encode())
        self._queued_events += len(events)
        return batch_id

    def batches(self) -> list[QueuedBatch]:
        """Queued batches, oldest first."""
        found = []
        for path in sorted(self.queue.glob("*.json"), key=self._seq):
            doc = json.loads(path.read_text())
            found.append(QueuedBatch(path, doc["batch_id"], doc["events"]))
        return found

    def acknowledged(self, batch: QueuedBatch) -> None:
        batch.path.unlink(missing_ok=True)
        self._queued_events -= len(batch.events)

    def set_aside(self, batch: QueuedBatch) -> None:
        """A batch the control plane refused for good: kept for the operator, not retried."""
        os.replace(batch.path, self.refused / batch.path.name)
        self._queued_events -= len(batch.events)
