"""`vpngw-regulator witness keygen|serve`: run a C2SP tlog-witness for a vpngw log."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.audit.cosignature import Cosigner
    from gateway.witness.server import Witness

DEFAULT_STATE = Path("~/.vpngw-witness")


class WitnessUsageError(Exception):
    """Bad flags or key files; the message says what to fix."""


def keygen(name: str, out: Path) -> tuple[Path, str]:
    """Write a new witness key to ``out`` (mode 0600, never replaced); return (path, vkey)."""
    from gateway.audit.cosignature import CosignatureError, Cosigner
    from gateway.audit.note import KeyFormatError, encode_private_key, generate_signer_key

    key = generate_signer_key()
    try:
        cosigner = Cosigner(name, key)
        text = encode_private_key(name, key)
    except (CosignatureError, KeyFormatError) as exc:
        raise WitnessUsageError(f"--name: {exc}") from exc
    out = out.expanduser()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise WitnessUsageError(f"{out} already exists; keygen never replaces a key") from exc
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text + "\n")
    vkey = cosigner.verifier.vkey()
    out.with_name(out.name + ".vkey").write_text(vkey + "\n", encoding="ascii")
    return out, vkey


def load_cosigner(path: Path) -> Cosigner:
    from gateway.audit.cosignature import CosignatureError, Cosigner

    path = path.expanduser()
    try:
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise WitnessUsageError(f"{path} must not be accessible by group or others "
                                    f"(chmod 600 {path})")
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise WitnessUsageError(f"cannot read witness key {path}: {exc}") from exc
    try:
        return Cosigner.from_private_key(text)
    except CosignatureError as exc:
        raise WitnessUsageError(f"{path}: {exc}") from exc


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise WitnessUsageError(f"--listen must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _build(args: argparse.Namespace) -> Witness:
    from gateway.audit.note import Ed25519NoteVerifier, NoteError
    from gateway.witness.server import Witness
    from gateway.witness.store import WitnessStore

    if not args.log_vkey:
        raise WitnessUsageError("give at least one --log-vkey (the vpngw log's note vkey)")
    cosigner = load_cosigner(Path(args.key))
    logs: dict[str, Ed25519NoteVerifier] = {}
    for vkey in args.log_vkey:
        try:
            verifier = Ed25519NoteVerifier.from_vkey(vkey)
        except NoteError as exc:
            raise WitnessUsageError(f"--log-vkey {vkey!r}: {exc}") from exc
        logs[verifier.name] = verifier
    state_dir = Path(args.state or DEFAULT_STATE).expanduser()
    try:
        store = WitnessStore(state_dir)
    except (OSError, sqlite3.Error) as exc:
        raise WitnessUsageError(f"--state {state_dir}: {exc}") from exc
    return Witness(cosigner=cosigner, logs=logs, store=store)


async def _serve(witness: Witness, host: str, port: int, prefix: str) -> None:
    from gateway.witness.server import create_witness_app

    runner = web.AppRunner(create_witness_app(witness, prefix=prefix),
                           access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    # Tests and operators read these lines to learn the port and the key to publish.
    print(f"witness vkey {witness.cosigner.verifier.vkey()}", flush=True)
    print(f"witnessing {', '.join(sorted(witness.logs))}; state in {witness.store.path}",
          flush=True)
    print(f"listening on http://{bound[0]}:{bound[1]}{prefix.rstrip('/')}/add-checkpoint",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def cmd_witness_serve(args: argparse.Namespace) -> int:
    host, port = _hostport(args.listen)
    witness = _build(args)
    asyncio.run(_serve(witness, host, port, args.prefix))
    return 0


def cmd_witness_keygen(args: argparse.Namespace) -> int:
    path, vkey = keygen(args.name, Path(args.out))
    print(f"private key: {path} (mode 0600; never share it)")
    print(f"witness vkey: {vkey}")
    print("\nPublish the vkey; the provider lists it with your URL in [witness] of its "
          "gateway.toml, and regulators pass it to --witness.", file=sys.stdout)
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    witness = sub.add_parser("witness", help="run a witness that cosigns the log's checkpoints")
    wsub = witness.add_subparsers(dest="witness_command", required=True)
    keygen_p = wsub.add_parser("keygen", help="create a witness key")
    keygen_p.add_argument("--name", required=True,
                          help="witness name, e.g. witness.regulator.example/w1")
    keygen_p.add_argument("--out", required=True, metavar="FILE", help="private key file")
    keygen_p.set_defaults(func=cmd_witness_keygen)
    serve = wsub.add_parser("serve", help="serve POST /add-checkpoint (C2SP tlog-witness)")
    serve.add_argument("--key", required=True, metavar="FILE", help="witness private key")
    serve.add_argument("--log-vkey", action="append", default=[], metavar="VKEY",
                       help="note vkey of a log to witness (repeatable)")
    serve.add_argument("--listen", default="127.0.0.1:8081", metavar="HOST:PORT",
                       help="address to listen on (default 127.0.0.1:8081)")
    serve.add_argument("--prefix", default="", help="URL path prefix (default none)")
    serve.add_argument("--state", metavar="DIR",
                       help=f"state directory (default {DEFAULT_STATE})")
    serve.set_defaults(func=cmd_witness_serve)
