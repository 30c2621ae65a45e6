"""`vpngw-regulator`: sign queries, verify answers and checkpoints, keep the log honest.

Exit status: 0 every check passed; 1 a check failed (the log, an answer or the state
file does not verify); 2 bad usage or input; 3 the gateway could not be reached or
refused the request.  Failures print one line on stderr naming the failed check(s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

PROG = "vpngw-regulator"


class UsageError(Exception):
    """Bad flags or input files (exit 2)."""


class Failed(Exception):
    """A check failed (exit 1); the message is the one-line reason.

    ``reported`` is True when the command already printed its --json document.
    """

    def __init__(self, reason: str, *, reported: bool = False) -> None:
        super().__init__(reason)
        self.reported = reported


# --------------------------------------------------------------------------- output


def _table(rows: Sequence[Sequence[str]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


_RECORD_SKIP = {"v", "type", "ts", "salt", "tenant_id", "peer_id"}


def _details(event: dict[str, Any]) -> str:
    parts = []
    for key in sorted(set(event) - _RECORD_SKIP):
        value = event[key]
        text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _record_rows(records: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for record in records:
        event = record.get("event")
        event = event if isinstance(event, dict) else {}
        rows.append([str(record.get("index", "")), str(event.get("ts", "")),
                     str(event.get("type", "")), str(event.get("tenant_id", "")),
                     str(event.get("peer_id", "")), _details(event)])
    return rows


def _print_records(records: Sequence[dict[str, Any]]) -> None:
    print(_table(_record_rows(records), ("index", "ts", "type", "tenant", "peer", "details")))


def _print_derivation(answer: dict[str, Any]) -> None:
    d = answer.get("derivation")
    if isinstance(d, dict):
        print(f"egress block: gateway {d.get('gateway_id')}, ports {d.get('first_port')}-"
              f"{d.get('last_port')} belong to tunnel address {d.get('tunnel_ip')} "
              "(recomputed from the egress.configured record)")


def _print_checks(checks: Sequence[Any]) -> None:
    rows = [[c.name, "ok" if c.ok else "FAILED", c.detail] for c in checks]
    print(_table(rows, ("check", "result", "detail")))


def _emit_json(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True))


def _fail_line(reason: str) -> None:
    print(f"{PROG}: FAILED: {' '.join(reason.split())}", file=sys.stderr)


# --------------------------------------------------------------------------- helpers


def _pins(args: argparse.Namespace) -> Any:
    from gateway.regulator.client import ClientError, load_pins

    try:
        return load_pins(pin_file=Path(args.pin_keys) if args.pin_keys else None,
                         vkey=args.vkey, response_key=args.response_key)
    except ClientError as exc:
        raise UsageError(str(exc)) from exc


def _log_key(args: argparse.Namespace) -> Any:
    from gateway.regulator.client import ClientError, load_log_key

    try:
        return load_log_key(pin_file=Path(args.pin_keys) if args.pin_keys else None,
                            vkey=args.vkey)
    except ClientError as exc:
        raise UsageError(str(exc)) from exc


def _base(args: argparse.Namespace) -> Any:
    from gateway.regulator.client import ClientError, base_url

    try:
        return base_url(args.url)
    except ClientError as exc:
        raise UsageError(str(exc)) from exc


def _witness_policy(args: argparse.Namespace) -> Any:
    from gateway.regulator.witnesses import WitnessPolicy

    try:
        return WitnessPolicy.from_flags(args.witness, args.quorum)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _state_path(args: argparse.Namespace) -> Path:
    from gateway.regulator.client import DEFAULT_STATE

    return Path(args.state).expanduser() if args.state else DEFAULT_STATE.expanduser()


_QUERY_FLAGS = {
    "attribution.tunnel_ip": ({"ip", "at"}, set()),
    "attribution.endpoint": ({"ip", "at"}, {"port"}),
    "activity.tenant": ({"tenant", "from_", "to"}, set()),
    "activity.peer": ({"peer", "from_", "to"}, set()),
    "attribution.egress": ({"ip", "port", "at"}, set()),
}
_FLAG_NAME = {"from_": "--from", "tenant": "--tenant", "peer": "--peer", "ip": "--ip",
              "at": "--at", "to": "--to", "port": "--port"}
_REQUIRED_FLAGS = {
    "request_country": "--request-country", "request_authority": "--request-authority",
    "request_number": "--request-number", "auth_reference": "--auth-reference",
    "auth_basis": "--auth-basis", "auth_from": "--auth-from", "auth_until": "--auth-until",
}


_REQUIRED_HELP = {
    "--request-country": ("CC", "request_id.country: ISO 3166 code of the requesting state"),
    "--request-authority": ("NAME", "request_id.authority, e.g. PTA"),
    "--request-number": ("NUMBER", "request_id.number: the authority's case number"),
    "--auth-reference": ("REF", "authorisation.reference, e.g. PTA/LI/2026/0042"),
    "--auth-basis": ("TEXT", "authorisation.legal_basis, e.g. 'PECA 2016 s.32'"),
    "--auth-from": ("TIME", "authorisation.valid_from (RFC 3339)"),
    "--auth-until": ("TIME", "authorisation.valid_until (RFC 3339)"),
}


def _body_from_flags(args: argparse.Namespace) -> bytes:
    if not args.kind:
        raise UsageError("give the query as --file query.json or with --kind and its flags")
    required, optional = _QUERY_FLAGS[args.kind]
    missing = [_FLAG_NAME[f] for f in sorted(required) if getattr(args, f) is None]
    missing += [flag for dest, flag in _REQUIRED_FLAGS.items() if getattr(args, dest) is None]
    if missing:
        raise UsageError(f"{args.kind} needs " + ", ".join(missing))
    extra = [_FLAG_NAME[f] for f in _FLAG_NAME
             if f not in required | optional and getattr(args, f) is not None]
    if extra:
        raise UsageError(f"{', '.join(extra)} do(es) not apply to a {args.kind} query")
    query: dict[str, Any] = {"kind": args.kind}
    for name in sorted(required | optional):
        value = getattr(args, name)
        if value is not None:
            query["tenant_id" if name == "tenant" else "peer_id" if name == "peer"
                  else name.rstrip("_")] = value
    doc: dict[str, Any] = {
        "request_id": {"country": args.request_country, "authority": args.request_authority,
                       "number": args.request_number},
        "authorisation": {"reference": args.auth_reference, "legal_basis": args.auth_basis,
                          "valid_from": args.auth_from, "valid_until": args.auth_until},
        "query": query,
    }
    if args.max_hits is not None:
        doc["max_hits"] = args.max_hits
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def _query_body(args: argparse.Namespace) -> bytes:
    from gateway.regulator.request import parse_request
    from provisioning.errors import InvalidInput

    flags = [f for f in (*_FLAG_NAME, *_REQUIRED_FLAGS, "kind", "max_hits")
             if getattr(args, f) is not None]
    if args.file:
        if flags:
            raise UsageError("give either --file or the query flags, not both")
        try:
            body = Path(args.file).expanduser().read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc}") from exc
    else:
        body = _body_from_flags(args)
    # The same validation the gateway applies, so a bad query is caught before it is
    # signed (and logged).  A --file is sent byte for byte: its SHA-256 is what the
    # gateway logs as body_sha256.
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise UsageError(f"the query is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise UsageError("the query must be a JSON object")
    try:
        parse_request(doc, default_max_hits=100, max_hits_limit=1000)
    except InvalidInput as exc:
        raise UsageError(f"invalid query: {exc.detail}") from exc
    return body


def _add_witness_check(result: Any, pins: Any, policy: Any) -> None:
    from gateway.regulator.answer import Check
    from gateway.regulator.witnesses import witness_check

    if policy is None:
        return
    note = (result.answer or {}).get("checkpoint")
    if not isinstance(note, str):
        result.checks.append(Check("witnesses", False, "not checked: no checkpoint in the answer"))
        return
    result.checks.append(witness_check(note, pins.log, policy))


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


# --------------------------------------------------------------------------- commands


def cmd_keygen(args: argparse.Namespace) -> int:
    from gateway.regulator.client import ClientError, write_key_pair
    from provisioning import validation
    from provisioning.errors import InvalidInput

    if args.keyid is not None:
        try:
            validation.reference("keyid", args.keyid, max_len=128)
        except InvalidInput as exc:
            raise UsageError(f"--keyid {exc.detail}") from exc
        if '"' in args.keyid or "\\" in args.keyid:
            raise UsageError("--keyid must not contain quotes or backslashes")
    try:
        made = write_key_pair(Path(args.out), args.keyid)
    except ClientError as exc:
        raise UsageError(str(exc)) from exc
    doc = {"keyid": made.keyid, "public_key": made.public_key,
           "private_key_file": str(made.private_path), "public_key_file": str(made.public_path),
           "registration_file": str(made.registration_path)}
    if args.json:
        _emit_json(doc)
        return EXIT_OK
    print(f"keyid:       {made.keyid}")
    print(f"public key:  {made.public_key}")
    print(f"private key: {made.private_path} (mode 0600; never share it)")
    print()
    print("Hand the keyid and public key to the provider's ops, who register them with")
    print(f"  POST /ops/v1/regulator-keys  (body: {made.registration_path})")
    return EXIT_OK


def cmd_keys(args: argparse.Namespace) -> int:
    from gateway.regulator.answer import AnswerFormatError, Pins
    from gateway.regulator.client import GatewayClient, write_json_file

    async def fetch() -> dict[str, Any]:
        async with GatewayClient(_base(args), timeout=args.timeout,
                                 cafile=args.cacert) as gw:
            return await gw.keys()

    doc = _run(fetch())
    try:
        pins = Pins.from_keys_document(doc)
    except AnswerFormatError as exc:
        raise Failed(f"keys: the gateway's keys document is invalid: {exc}") from exc
    pinned = pins.keys_document()
    if args.save:
        write_json_file(Path(args.save), pinned, mode=0o644)
    if args.json:
        _emit_json({**pinned, "saved": args.save})
        return EXIT_OK
    print(f"log origin:          {pins.log.name}")
    print(f"log vkey:            {pins.log.vkey()}")
    print(f"response keyid:      {pins.response_keyid}")
    print(f"response public key: {pins.response_key_b64}")
    if args.save:
        print(f"\npinned in {args.save}; compare these values with the ones the provider "
              "gave you out of band before relying on them")
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    from gateway.regulator.answer import Check, verify_exchange
    from gateway.regulator.client import (
        ClientError,
        GatewayClient,
        StateError,
        StateFile,
        check_consistency,
        load_private_key,
        write_json_file,
    )

    pins = _pins(args)
    policy = _witness_policy(args)
    body = _query_body(args)
    try:
        key = load_private_key(Path(args.key))
    except ClientError as exc:
        raise UsageError(str(exc)) from exc
    base = _base(args)
    state = StateFile(_state_path(args))
    try:
        old = state.load(pins.log)
    except StateError as exc:
        raise Failed(f"state: {exc}") from exc

    async def run() -> tuple[Any, Any, Check]:
        async with GatewayClient(base, timeout=args.timeout, cafile=args.cacert) as gw:
            exchange = await gw.query(body, private_key=key, keyid=args.keyid,
                                      created=int(time.time()))
            result = verify_exchange(exchange, pins, now=time.time())
            if result.tree_head is None:
                consistency = Check("consistency", False,
                                    "not checked: the checkpoint did not verify")
            else:
                consistency = await check_consistency(gw, old, result.tree_head)
            return exchange, result, consistency

    exchange, result, consistency = _run(run())
    if args.save:
        write_json_file(Path(args.save), exchange.to_document())
    result.checks.append(consistency)
    _add_witness_check(result, pins, policy)
    if consistency.ok and result.tree_head is not None:
        state.store(pins.log, result.tree_head, url=str(base))
    answer = result.answer or {}
    summary = {
        "ok": result.ok, "body_sha256": exchange.body_sha256,
        "truncated": answer.get("truncated"), "derivation": answer.get("derivation"),
        "checkpoint": result.tree_head.summary() if result.tree_head else None,
        "records": result.records, "checks": [c.as_dict() for c in result.checks],
        "saved": args.save, "error": result.reason() or None,
    }
    if args.json:
        _emit_json(summary)
    else:
        _print_records(result.records)
        _print_derivation(answer)
        if answer.get("truncated"):
            print("(truncated: more records match; raise --max-hits, at most 1000)")
        print()
        _print_checks(result.checks)
        print(f"\nrequest body sha256 {exchange.body_sha256} (logged as the regulator.query "
              "event's body_sha256)")
        if args.save:
            print(f"answer saved to {args.save}")
    if not result.ok:
        raise Failed(result.reason(), reported=args.json)
    return EXIT_OK


def cmd_checkpoint(args: argparse.Namespace) -> int:
    from gateway.audit.note import NoteError
    from gateway.regulator.answer import Check, open_checkpoint
    from gateway.regulator.client import (
        GatewayClient,
        StateError,
        StateFile,
        check_consistency,
    )
    from gateway.regulator.witnesses import witness_check

    log_key = _log_key(args)
    policy = _witness_policy(args)
    base = _base(args)
    state = StateFile(_state_path(args))
    try:
        old = state.load(log_key)
    except StateError as exc:
        raise Failed(f"state: {exc}") from exc

    async def run() -> tuple[Any, list[Check]]:
        async with GatewayClient(base, timeout=args.timeout, cafile=args.cacert) as gw:
            note = await gw.checkpoint()
            try:
                head = open_checkpoint(note, log_key)
            except NoteError as exc:
                return None, [Check("checkpoint-signature", False, str(exc))]
            signed = Check("checkpoint-signature", True,
                           f"signed by {log_key.name}+{log_key.key_id.hex()}")
            checks = [signed, await check_consistency(gw, old, head)]
            if policy is not None:
                checks.append(witness_check(note, log_key, policy))
            return head, checks

    head, checks = _run(run())
    ok = all(c.ok for c in checks)
    if ok and head is not None:
        state.store(log_key, head, url=str(base))
    reason = "; ".join(f"{c.name}: {c.detail}" for c in checks if not c.ok)
    if args.json:
        _emit_json({"ok": ok, "checkpoint": head.summary() if head else None,
                    "previous": old.summary() if old else None,
                    "checks": [c.as_dict() for c in checks], "error": reason or None,
                    "state": str(state.path)})
    else:
        if head is not None:
            print(f"origin: {head.origin}\nsize:   {head.size}\nroot:   "
                  f"{head.summary()['root']}\n")
        _print_checks(checks)
        print(f"\nstate: {state.path}" + (" (updated)" if ok else " (unchanged)"))
    if not ok:
        raise Failed(reason, reported=args.json)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from gateway.regulator.answer import AnswerFormatError, Exchange, verify_exchange
    from gateway.regulator.client import ClientError, read_json_file

    pins = _pins(args)
    policy = _witness_policy(args)
    try:
        exchange = Exchange.from_document(read_json_file(Path(args.file), "saved answer"))
    except (ClientError, AnswerFormatError) as exc:
        raise UsageError(f"{args.file}: {exc}") from exc
    result = verify_exchange(exchange, pins, now=None)
    _add_witness_check(result, pins, policy)
    answer = result.answer or {}
    if args.json:
        _emit_json({"ok": result.ok, "file": args.file, "url": exchange.url,
                    "received_at": exchange.received_at, "body_sha256": exchange.body_sha256,
                    "truncated": answer.get("truncated"),
                    "derivation": answer.get("derivation"),
                    "checkpoint": result.tree_head.summary() if result.tree_head else None,
                    "records": result.records, "checks": [c.as_dict() for c in result.checks],
                    "error": result.reason() or None})
    else:
        print(f"answer from {exchange.url}, received {exchange.received_at or 'unknown'}\n")
        _print_records(result.records)
        _print_derivation(answer)
        print()
        _print_checks(result.checks)
    if not result.ok:
        raise Failed(result.reason(), reported=args.json)
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from gateway.transparency.cli import add_report_parser

    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="exit status: 0 all checks passed, 1 a check failed, 2 usage error, "
               "3 gateway unreachable or request refused",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    net = argparse.ArgumentParser(add_help=False)
    net.add_argument("--url", required=True, help="gateway base URL, e.g. https://gw.example.net")
    net.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    net.add_argument("--cacert", help="CA bundle to trust for https")
    pins = argparse.ArgumentParser(add_help=False)
    pins.add_argument("--vkey", help="the log's note verifier key <name>+<hex id>+<base64>")
    pins.add_argument("--response-key", help="the provider's response key (base64, 32 bytes)")
    pins.add_argument("--pin-keys", metavar="FILE",
                      help="pinned keys saved by `keys --save FILE` (flags take precedence)")
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument("--state", metavar="FILE",
                       help="last checkpoint seen (default ~/.vpngw-regulator/state.json)")

    keygen = sub.add_parser("keygen", parents=[common], help="create a signing key pair")
    keygen.add_argument("--out", required=True, metavar="DIR", help="directory for the key files")
    keygen.add_argument("--keyid", help="key id to register (default reg-<hash of the key>)")
    keygen.set_defaults(func=cmd_keygen)

    keys = sub.add_parser("keys", parents=[common, net], help="fetch the provider's keys to pin")
    keys.add_argument("--save", metavar="FILE", help="write them as a pin file")
    keys.set_defaults(func=cmd_keys)

    query = sub.add_parser("query", parents=[common, net, pins, state],
                           help="sign and send a query; verify the answer")
    query.add_argument("--key", required=True, metavar="FILE", help="private key (PEM)")
    query.add_argument("--keyid", required=True, help="registered key id")
    query.add_argument("--save", metavar="FILE", help="keep the answer for offline `verify`")
    query.add_argument("--file", metavar="FILE", help="the whole query document (sent as is)")
    q = query.add_argument_group("query flags (instead of --file)")
    q.add_argument("--kind", choices=sorted(_QUERY_FLAGS))
    q.add_argument("--ip", help="tunnel or public IP address")
    q.add_argument("--port", type=int,
                   help="public source port (attribution.endpoint, attribution.egress)")
    q.add_argument("--at", metavar="TIME", help="RFC 3339 time, e.g. 2026-11-30T03:00:00Z")
    q.add_argument("--tenant", help="tenant id (activity.tenant)")
    q.add_argument("--peer", help="peer id (activity.peer)")
    q.add_argument("--from", dest="from_", metavar="TIME", help="window start (RFC 3339)")
    q.add_argument("--to", metavar="TIME", help="window end (RFC 3339)")
    q.add_argument("--max-hits", type=int, help="at most this many records (default 100)")
    for flag, (metavar, text) in _REQUIRED_HELP.items():
        q.add_argument(flag, metavar=metavar, help=text)
    query.set_defaults(func=cmd_query)

    log_pin = argparse.ArgumentParser(add_help=False)
    log_pin.add_argument("--vkey", help="the log's note verifier key <name>+<hex id>+<base64>")
    log_pin.add_argument("--pin-keys", metavar="FILE",
                         help="pinned keys saved by `keys --save FILE` (--vkey takes precedence)")
    checkpoint = sub.add_parser("checkpoint", parents=[common, net, log_pin, state],
                                help="fetch and verify the latest checkpoint; check consistency")
    checkpoint.set_defaults(func=cmd_checkpoint)
    add_report_parser(sub, [common, net, log_pin])

    verify = sub.add_parser("verify", parents=[common, pins],
                            help="re-verify a saved answer offline")
    verify.add_argument("file", help="answer saved by `query --save`")
    verify.set_defaults(func=cmd_verify)
    for command in (checkpoint, verify, query):
        command.add_argument("--witness", action="append", default=[], metavar="VKEY",
                             help="a trusted witness's vkey (cosignature/v1, repeatable)")
        command.add_argument("--quorum", type=int, default=None, metavar="N",
                             help="fail unless N of the --witness keys cosigned the "
                                  "checkpoint (default: all of them)")

    from gateway.witness.cli import add_parsers

    add_parsers(sub)
    return parser


def _die(code: int, message: str) -> NoReturn:
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    from gateway.regulator.client import ClientError, RefusedError
    from gateway.witness.cli import WitnessUsageError

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        code: int = args.func(args)
        return code
    except Failed as exc:
        if getattr(args, "json", False) and not exc.reported:
            _emit_json({"ok": False, "error": str(exc)})
        _fail_line(str(exc))
        return EXIT_FAILED
    except (UsageError, WitnessUsageError) as exc:
        _die(EXIT_USAGE, str(exc))
    except RefusedError as exc:
        if getattr(args, "json", False):
            _emit_json({"ok": False, "error": str(exc), "status": exc.status,
                        "problem": exc.problem})
        _die(EXIT_UNAVAILABLE, str(exc))
    except ClientError as exc:
        _die(EXIT_UNAVAILABLE, str(exc))
    except OSError as exc:
        _die(EXIT_USAGE, f"{exc.__class__.__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
