"""Payload keys: the key file, sealing and opening, and processes sharing one file."""

from __future__ import annotations

import multiprocessing
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.audit import merkle
from gateway.audit.payloadkeys import (
    PayloadKeyError,
    PayloadKeys,
    SealedPayloadError,
    day_of,
    day_start,
    is_sealed,
    open_rows,
    seal,
    sealed_day,
    unseal,
    unseal_many,
)
from gateway.audit.storage import Opener

LEAF = b'{"salt":"AAAAAAAAAAAAAAAAAAAAAA==","ts":"2026-11-30T03:00:00Z","type":"x.y","v":1}'
OTHER = b'{"salt":"BBBBBBBBBBBBBBBBBBBBBB==","ts":"2026-11-30T03:00:00Z","type":"x.y","v":1}'
DAY = day_of(datetime(2026, 11, 30, 3, tzinfo=UTC))


def test_days_are_utc_calendar_days() -> None:
    assert day_of(datetime(2026, 11, 30, 0, 0, tzinfo=UTC)) == day_of(
        datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)) == DAY
    assert day_of(datetime(2026, 12, 1, tzinfo=UTC)) == DAY + 1
    assert day_start(DAY) == datetime(2026, 11, 30, tzinfo=UTC)


def test_round_trip_and_the_file(tmp_path: Path) -> None:
    keys = PayloadKeys.in_data_dir(tmp_path)
    h = merkle.leaf_hash(LEAF)
    stored = seal(keys.for_sealing(DAY), DAY, LEAF, h)
    assert is_sealed(stored) and sealed_day(stored) == DAY and LEAF not in stored
    assert Opener(keys).strict(stored, h) == LEAF
    assert stat.S_IMODE(keys.path.stat().st_mode) == 0o600
    assert '"2026-11-30"' in keys.path.read_text()
    # Another process reading the same file opens it too.
    assert Opener(PayloadKeys(keys.path)).strict(stored, h) == LEAF


def test_a_fresh_nonce_each_time(tmp_path: Path) -> None:
    aead = PayloadKeys.in_data_dir(tmp_path).for_sealing(DAY)
    h = merkle.leaf_hash(LEAF)
    assert seal(aead, DAY, LEAF, h) != seal(aead, DAY, LEAF, h)


def test_ciphertexts_cannot_be_swapped_or_altered(tmp_path: Path) -> None:
    keys = PayloadKeys.in_data_dir(tmp_path)
    aead = keys.for_sealing(DAY)
    h1, h2 = merkle.leaf_hash(LEAF), merkle.leaf_hash(OTHER)
    one, two = seal(aead, DAY, LEAF, h1), seal(aead, DAY, OTHER, h2)
    with pytest.raises(SealedPayloadError):
        unseal(aead, two, h1)  # another entry's ciphertext under this entry's leaf hash
    with pytest.raises(SealedPayloadError):
        unseal(aead, one[:-1], h1)
    keys.for_sealing(DAY + 1)  # a flipped day may name a key that exists
    for i in range(len(one)):
        for bit in range(8):
            flipped = bytearray(one)
            flipped[i] ^= 1 << bit
            try:
                opened = Opener(keys).strict(bytes(flipped), h1)
            except SealedPayloadError:
                continue
            assert opened is None  # a day whose key does not exist: erased
    # Readers that must not fail report an altered payload as unreadable.
    assert Opener(keys).leaf(two, h1) is None


def test_unseal_many_opens_a_batch_like_unseal_and_refuses_any_altered_one(
    tmp_path: Path,
) -> None:
    aead = PayloadKeys.in_data_dir(tmp_path).for_sealing(DAY)
    leaves = [LEAF, OTHER, LEAF]
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    stored = [seal(aead, DAY, leaf, h) for leaf, h in zip(leaves, hashes, strict=True)]
    assert unseal_many(aead, stored, hashes) == leaves
    assert unseal_many(aead, [], []) == []
    for bad in ([stored[0], stored[1], stored[2][:-1]],  # altered
                [stored[0], stored[1][:20], stored[2]],  # truncated
                [stored[1], stored[0], stored[2]]):  # swapped between entries
        with pytest.raises(SealedPayloadError):
            unseal_many(aead, bad, hashes)


def test_a_deleted_key_reads_as_erased(tmp_path: Path) -> None:
    keys = PayloadKeys.in_data_dir(tmp_path)
    h = merkle.leaf_hash(LEAF)
    old = seal(keys.for_sealing(DAY), DAY, LEAF, h)
    new = seal(keys.for_sealing(DAY + 1), DAY + 1, OTHER, merkle.leaf_hash(OTHER))
    assert keys.forget_before(DAY + 1) == [DAY]
    assert keys.days() == [DAY + 1]
    assert Opener(keys).strict(old, h) is None
    assert Opener(PayloadKeys(keys.path)).strict(old, h) is None
    assert Opener(keys).strict(new, merkle.leaf_hash(OTHER)) == OTHER
    assert Opener(None).strict(old, h) is None  # no keys at all: erased too


def test_open_rows_answers_each_row_whichever_way_the_batch_is_opened(tmp_path: Path) -> None:
    keys = PayloadKeys.in_data_dir(tmp_path)
    leaves = [LEAF, OTHER, LEAF]
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    aead = keys.for_sealing(DAY)
    sealed = [seal(aead, DAY, leaf, h) for leaf, h in zip(leaves, hashes, strict=True)]
    rows = [(i, s, h) for i, (s, h) in enumerate(zip(sealed, hashes, strict=True))]
    # One day's key for the whole batch (opened at once); plaintext rows come back as they are.
    expected = list(zip(range(3), leaves, hashes, strict=True))
    assert [tuple(r) for r in open_rows(rows, keys)] == expected
    plain = [(i, leaf, h) for i, (leaf, h) in enumerate(zip(leaves, hashes, strict=True))]
    assert open_rows(plain, keys) is plain
    # One altered row: the others still open, it comes back as stored (so it hashes wrong).
    altered = sealed[1][:-1] + bytes([sealed[1][-1] ^ 1])
    opened = open_rows([rows[0], (1, altered, hashes[1]), rows[2]], keys)
    assert [r[1] for r in opened] == [LEAF, altered, LEAF]
    # Mixed days, plaintext and an erased payload (no stored bytes) row by row.
    later = seal(keys.for_sealing(DAY + 1), DAY + 1, OTHER, hashes[1])
    mixed = [rows[0], (1, later, hashes[1]), (2, LEAF, hashes[2]), (3, None, hashes[0])]
    assert [r[1] for r in open_rows(mixed, keys)] == [LEAF, OTHER, LEAF, None]
    # The day's key deleted: every payload of that day reads as erased.
    keys.forget_before(DAY + 1)
    assert [r[1] for r in open_rows(rows, PayloadKeys(keys.path))] == [None, None, None]
    assert [r[1] for r in open_rows(rows, None)] == [None, None, None]


def test_plaintext_rows_from_before_sealing_stay_readable(tmp_path: Path) -> None:
    h = merkle.leaf_hash(LEAF)
    assert Opener(PayloadKeys.in_data_dir(tmp_path)).strict(LEAF, h) == LEAF
    assert Opener(None).event(LEAF, h) == {"salt": "AAAAAAAAAAAAAAAAAAAAAA==",
                                           "ts": "2026-11-30T03:00:00Z", "type": "x.y", "v": 1}
    assert Opener(None).leaf(None, h) is None


def test_an_exposed_or_damaged_key_file_is_refused(tmp_path: Path) -> None:
    keys = PayloadKeys.in_data_dir(tmp_path)
    keys.for_sealing(DAY)
    os.chmod(keys.path, 0o644)
    with pytest.raises(PayloadKeyError, match="chmod 600"):
        PayloadKeys(keys.path).days()
    os.chmod(keys.path, 0o600)
    keys.path.write_text('{"version": 1, "period": "utc-day", "keys": {"2026-11-30": "AAAA"}}')
    with pytest.raises(PayloadKeyError, match="32 bytes"):
        PayloadKeys(keys.path).days()
    keys.path.write_text("not json")
    with pytest.raises(PayloadKeyError, match="backup"):
        PayloadKeys(keys.path).days()


def _seal_in_child(path: str, start: multiprocessing.synchronize.Event,  # type: ignore[name-defined]
                   out: multiprocessing.Queue[bytes]) -> None:
    start.wait()
    out.put(seal(PayloadKeys(Path(path)).for_sealing(DAY), DAY, LEAF, merkle.leaf_hash(LEAF)))


def test_processes_creating_the_same_days_key_end_up_with_one(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    path = tmp_path / "payload-keys.json"
    for _ in range(5):
        path.unlink(missing_ok=True)
        start, out = ctx.Event(), ctx.Queue()
        children = [ctx.Process(target=_seal_in_child, args=(str(path), start, out))
                    for _ in range(4)]
        for child in children:
            child.start()
        start.set()
        sealed = [out.get(timeout=30) for _ in children]
        for child in children:
            child.join(timeout=30)
        keys = PayloadKeys(path)
        assert keys.days() == [DAY]
        # Whichever process created it, every payload opens with the one key kept.
        assert [Opener(keys).strict(s, merkle.leaf_hash(LEAF)) for s in sealed] == [LEAF] * 4
