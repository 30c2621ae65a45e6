"""Data keys for log payloads at rest: one AES-256-GCM key per UTC day, in a 0600 file.

An entry's payload is stored sealed under the key of the UTC day of its ``ts``; retention
erases whole days, so when a day lies entirely before the retention cut-off its key is
deleted and the payload is unreadable in every copy of the database at once (data files,
WAL, replicas, dumps, backups). The keys live in the data dir, never in the database, so
no database backup holds them.

The file (``payload-keys.json``) is shared by every control-plane process of the
deployment: a key is created on demand under an exclusive lock file, so two processes
creating the same day's key end up with one key; the file is replaced whole (a fsynced
0600 temp file renamed over it, then the directory fsynced). Each process keeps the keys
in memory and re-reads the file when it changed (checked at most once a second), so a
key another process deleted is soon forgotten here too.

Sealed form: ``0x01 | day (4 bytes, big-endian days since 1970-01-01) | nonce (12) |
ciphertext and tag``; the associated data is the 5-byte header and the entry's leaf hash,
so a ciphertext cannot be moved to another entry or another day. A canonical leaf always
starts with ``{``, so a plaintext payload written before sealing existed is told apart by
its first byte.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import operator
import os
import secrets
import struct
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.privatefiles import exposure

KEY_FILE = "payload-keys.json"
SEALED = 0x01
PLAIN = 0x7B  # "{": a canonical JSON leaf stored as it is
_HEADER = struct.Struct(">BI")
SEALED_HEADER_SIZE = _HEADER.size  # marker and day: equal for the payloads of one key
_NONCE = 12
_OVERHEAD = _HEADER.size + _NONCE + 16
_EPOCH = date(1970, 1, 1)
_SECONDS_PER_DAY = 86_400
_RECHECK_SECONDS = 1.0


class PayloadKeyError(Exception):
    """The key file is unreadable, malformed or too widely readable."""


class SealedPayloadError(Exception):
    """A sealed payload does not open under its day's key: altered or moved."""


def day_of(when: datetime) -> int:
    """The key period of an entry: its UTC day, as days since 1970-01-01."""
    return int(when.timestamp()) // _SECONDS_PER_DAY


def day_start(day: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)


_STORED = operator.itemgetter(1)
_FIRST_BYTE = operator.itemgetter(0)
_IDX, _HASH = operator.itemgetter(0), operator.itemgetter(2)
_HEADER_OF = operator.itemgetter(slice(0, _HEADER.size))


def is_sealed(stored: bytes) -> bool:
    return bool(stored) and stored[0] == SEALED


def sealed_day(stored: bytes) -> int:
    return int(_HEADER.unpack_from(stored)[1])


def seal(aead: AESGCM, day: int, leaf: bytes, leaf_hash: bytes) -> bytes:
    return seal_many(aead, day, [leaf], [leaf_hash])[0]


def seal_many(
    aead: AESGCM, day: int, leaves: Sequence[bytes], leaf_hashes: Sequence[bytes]
) -> list[bytes]:
    """Each leaf sealed with its own random nonce (drawn in one call for the batch)."""
    header = _HEADER.pack(SEALED, day)
    nonces = secrets.token_bytes(_NONCE * len(leaves))
    encrypt = aead.encrypt
    out = []
    for i, (leaf, h) in enumerate(zip(leaves, leaf_hashes, strict=True)):
        nonce = nonces[i * _NONCE:(i + 1) * _NONCE]
        out.append(header + nonce + encrypt(nonce, leaf, header + h))
    return out


def unseal(aead: AESGCM, stored: bytes, leaf_hash: bytes) -> bytes:
    """The plaintext leaf; SealedPayloadError if the bytes or their leaf hash were changed."""
    if len(stored) < _OVERHEAD:
        raise SealedPayloadError("sealed payload is truncated")
    header = stored[:_HEADER.size]
    nonce = stored[_HEADER.size:_HEADER.size + _NONCE]
    try:
        return aead.decrypt(nonce, stored[_HEADER.size + _NONCE:], header + leaf_hash)
    except InvalidTag:
        raise SealedPayloadError("sealed payload does not authenticate under its day's key "
                                 "and leaf hash") from None


def unseal_many(aead: AESGCM, stored: Sequence[bytes], leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """unseal() of a batch sealed under one key: the plain leaves, in order; the first one
    that does not authenticate raises SealedPayloadError as unseal() would."""
    head, body = _HEADER.size, _HEADER.size + _NONCE
    decrypt = aead.decrypt
    try:
        if stored and min(map(len, stored)) < _OVERHEAD:
            raise InvalidTag
        return [decrypt(s[head:body], s[body:], s[:head] + h)
                for s, h in zip(stored, leaf_hashes, strict=True)]
    except InvalidTag:
        for s, h in zip(stored, leaf_hashes, strict=True):  # name the reason, as unseal does
            unseal(aead, s, h)
        raise SealedPayloadError("sealed payload does not authenticate") from None


def open_rows(rows: list[Sequence[Any]], keys: PayloadKeys | None) -> list[Sequence[Any]]:
    """(idx, leaf, leaf hash) rows with each sealed leaf opened: the plain leaf, None if
    its day's key is gone (erased), or the stored bytes as they are if they do not
    authenticate, so a leaf-hash check reports the row as edited."""
    stored_leaves = list(map(_STORED, rows))
    # The common all-plaintext batch is found in C: no stored leaf starts with the marker.
    if SEALED not in bytes(map(_FIRST_BYTE, filter(None, stored_leaves))):
        return rows
    # The common sealed batch: every leaf sealed under one day's key that is still there.
    headers = set(map(_HEADER_OF, stored_leaves)) if None not in stored_leaves else set()
    if len(headers) == 1 and keys is not None:
        header = headers.pop()
        aead = (keys.for_opening(sealed_day(header))
                if len(header) == _HEADER.size and is_sealed(header) else None)
        if aead is not None:
            hashes = list(map(_HASH, rows))
            with contextlib.suppress(SealedPayloadError):  # then row by row, below
                opened = unseal_many(aead, stored_leaves, hashes)
                return list(zip(map(_IDX, rows), opened, hashes, strict=True))
    aeads: dict[int, AESGCM | None] = {}
    out: list[Sequence[Any]] = []
    for idx, stored, stored_hash in rows:
        leaf = stored
        if stored is not None and is_sealed(stored):
            day = sealed_day(stored)
            if day not in aeads:
                aeads[day] = None if keys is None else keys.for_opening(day)
            aead = aeads[day]
            try:
                leaf = None if aead is None else unseal(aead, stored, stored_hash)
            except SealedPayloadError:
                leaf = bytes(stored)
        out.append((idx, leaf, stored_hash))
    return out


class PayloadKeys:
    """The day keys in one key file, cached per process (one AESGCM object per key)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._keys: dict[int, AESGCM] = {}
        self._signature: tuple[int, int, int] | None = None
        self._checked = float("-inf")

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> PayloadKeys:
        return cls(Path(data_dir) / KEY_FILE)

    def __repr__(self) -> str:
        return f"PayloadKeys({self.path})"

    # --- use ------------------------------------------------------------------------

    def for_sealing(self, day: int) -> AESGCM:
        """The day's key, created (once, across processes) if it does not exist yet."""
        self._refresh()
        aead = self._keys.get(day)
        if aead is None:
            aead = self._create(day)
        return aead

    def for_opening(self, day: int) -> AESGCM | None:
        """The day's key, or None once it has been deleted (the payload is erased)."""
        self._refresh()
        aead = self._keys.get(day)
        if aead is None:
            self._refresh(force=True)  # another process may have created it just now
            aead = self._keys.get(day)
        return aead

    def days(self) -> list[int]:
        self._refresh(force=True)
        return sorted(self._keys)

    def forget_before(self, day: int) -> list[int]:
        """Delete every key of a day before `day` from the file and from memory."""
        with self._locked():
            keys = self._read()
            gone = sorted(d for d in keys if d < day)
            if gone:
                for d in gone:
                    del keys[d]
                self._write(keys)
            self._load(keys)
        return gone

    # --- the file -------------------------------------------------------------------

    def _refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < _RECHECK_SECONDS:
            return
        self._checked = now
        signature = self._stat()
        if signature != self._signature or signature is None:
            self._load(self._read())

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self, keys: dict[int, bytes]) -> None:
        old = self._keys
        # Keep the AESGCM objects of unchanged keys; drop those deleted elsewhere.
        self._keys = {d: old[d] if d in old else AESGCM(k) for d, k in keys.items()}
        self._signature = self._stat()

    def _create(self, day: int) -> AESGCM:
        with self._locked():
            keys = self._read()
            if day not in keys:
                keys[day] = AESGCM.generate_key(bit_length=256)
                self._write(keys)
            self._load(keys)
        return self._keys[day]

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read(self) -> dict[int, bytes]:
        problem = exposure(self.path)
        if problem is not None:
            raise PayloadKeyError(problem)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise PayloadKeyError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            doc = json.loads(text)
            if doc.get("version") != 1 or doc.get("period") != "utc-day":
                raise ValueError("unknown version or period")
            keys = {(date.fromisoformat(d) - _EPOCH).days: base64.b64decode(k, validate=True)
                    for d, k in doc["keys"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PayloadKeyError(f"{self.path} is not a payload key file ({exc}); restore it "
                                  "from the key backup") from None
        if any(len(k) != 32 for k in keys.values()):
            raise PayloadKeyError(f"{self.path}: every key must be 32 bytes of base64")
        return keys

    def _write(self, keys: dict[int, bytes]) -> None:
        doc = {"version": 1, "period": "utc-day", "keys": {
            (_EPOCH + timedelta(days=d)).isoformat(): base64.b64encode(k).decode("ascii")
            for d, k in sorted(keys.items())}}
        data = (json.dumps(doc, indent=1) + "\n").encode("ascii")
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
