"""The ``witnesses`` check: a checkpoint carries a quorum of trusted cosignatures (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.audit.cosignature import (
    CosignatureError,
    CosignerVerifier,
    check_quorum,
    open_witnessed_checkpoint,
)
from gateway.audit.note import Ed25519NoteVerifier, NoteError
from gateway.regulator.answer import Check

__all__ = ["WitnessPolicy", "witness_check"]


@dataclass(frozen=True)
class WitnessPolicy:
    """The witnesses a regulator trusts and how many of them must have cosigned."""

    witnesses: tuple[CosignerVerifier, ...]
    quorum: int

    @classmethod
    def from_flags(cls, vkeys: Sequence[str], quorum: int | None) -> WitnessPolicy | None:
        """None when no witness flag was given; raises ValueError naming the bad flag."""
        if not vkeys and quorum is None:
            return None
        witnesses = []
        for vkey in vkeys:
            try:
                witnesses.append(CosignerVerifier.from_vkey(vkey))
            except CosignatureError as exc:
                raise ValueError(f"--witness {vkey!r}: {exc}") from exc
        if len({w.key_id for w in witnesses}) != len(witnesses):
            raise ValueError("--witness: the same witness key is given twice")
        wanted = len(witnesses) if quorum is None else quorum
        if wanted < 1:
            raise ValueError("--quorum must be at least 1")
        if wanted > len(witnesses):
            raise ValueError(f"--quorum {wanted} needs at least {wanted} --witness keys, "
                             f"got {len(witnesses)}")
        return cls(tuple(witnesses), wanted)


def witness_check(note: str, log: Ed25519NoteVerifier, policy: WitnessPolicy) -> Check:
    """Verify the cosignatures on a checkpoint note against the policy."""
    try:
        witnessed = open_witnessed_checkpoint(note, log, policy.witnesses)
    except NoteError as exc:
        return Check("witnesses", False, f"the checkpoint cannot be opened: {exc}")
    missing = check_quorum(witnessed, policy.witnesses, policy.quorum)
    if missing is not None:
        return Check("witnesses", False, missing)
    names = ", ".join(f"{c.label} at {c.timestamp}" for c in witnessed.cosignatures)
    return Check("witnesses", True, f"{len(witnessed.cosignatures)} of {len(policy.witnesses)} "
                 f"witness(es) cosigned (quorum {policy.quorum}): {names}")
