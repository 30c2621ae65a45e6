"""`vpngw`: init, serve, and the ops commands (tables for people, --json for scripts)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import getpass
import json
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.egress.mapping import EgressConfigError, largest_pool_prefix
from gateway.egress.plan import plan_from
from gateway.egress.uplink import find_uplink
from gateway.privatefiles import ExposedFileError, write_private
from gateway.settings import CONFIG_FILE, Settings, SettingsError, load_settings


class CliError(Exception):
    """A failure to report in one line and exit 1."""


def _print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _emit(args: argparse.Namespace, doc: Any, columns: Sequence[str] | None = None) -> None:
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    elif columns is not None:
        _print_table(doc if isinstance(doc, list) else [doc], columns)
    else:
        for key, value in doc.items():
            print(f"{key:>22}: {value}")


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


# --- init ---------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> None:
    lines = ["# vpngw settings; every setting is documented in configs/gateway.toml", ""]
    for section, values in sections.items():
        if values:
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
            lines.append("")
    # Owner-only from the first byte: it may hold the database password.
    write_private(path, "\n".join(lines).encode("utf-8"))


def _prepare_data_dir(args: argparse.Namespace) -> tuple[Path, Settings]:
    """Create the data dir, its config (first time only) and its keys."""
    from gateway.keyfiles import create_keys

    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config_path = data_dir / CONFIG_FILE
    if not config_path.exists():
        network: dict[str, Any] = {}
        if args.endpoint:
            network["endpoint"] = args.endpoint
        if args.pool:
            network["pools"] = args.pool
        wireguard: dict[str, Any] = {}
        if args.wireguard:
            wireguard["backend"] = args.wireguard
        if args.interface:
            wireguard["interface"] = args.interface
        server: dict[str, Any] = {"listen": args.listen} if args.listen else {}
        if args.allow_plain_http:
            server["allow_plain_http"] = True
        database = {"url": args.database_url} if args.database_url else {}
        egress: dict[str, Any] = {}
        if args.egress_interface:
            egress["interface"] = args.egress_interface
        if args.egress_address:
            egress["addresses"] = args.egress_address
            if not args.pool:
                network["pools"] = [_default_ipv4_pool(len(args.egress_address)), DEFAULT_POOL6]
        write_config(
            config_path,
            {"server": server, "database": database, "network": network, "wireguard": wireguard,
             "egress": egress, "approvals": {"required": True}},
        )
        try:
            _check_egress_at_init(load_settings(data_dir))
        except (SettingsError, EgressConfigError):
            config_path.unlink()  # nothing half-made: fix the options and run init again
            raise
    elif (args.endpoint or args.pool or args.wireguard or args.interface or args.egress_address
          or args.allow_plain_http):
        raise CliError(f"{config_path} already exists; edit it instead of passing init options")
    settings = load_settings(data_dir)
    create_keys(data_dir)
    return data_dir, settings


DEFAULT_POOL6 = "fd00:100::/64"


def _default_ipv4_pool(address_count: int) -> str:
    """The largest pool (at most a /16) the egress addresses cover with 64-port blocks."""
    prefix = max(largest_pool_prefix(address_count, 65535 - 1024 + 1), 16)
    return f"10.100.0.0/{prefix}"


def _check_egress_at_init(settings: Settings) -> None:
    """Refuse settings whose egress addresses cannot cover the pool, before anything starts."""
    if not settings.egress.enabled:
        return
    e = settings.egress
    uplink = asyncio.run(find_uplink()) if not (e.interface and e.addresses) else None
    if uplink is None and not e.addresses:
        print("vpngw: note: no default route here; set egress.interface and egress.addresses "
              "before serving traffic", file=sys.stderr)
        return
    plan_from(settings, uplink)


async def _init(args: argparse.Namespace, data_dir: Path, settings: Settings) -> int:
    from gateway.clock import SystemClock
    from gateway.commands import Commands
    from gateway.db import Database
    from provisioning.tokens import Role, list_tokens

    config_path = data_dir / CONFIG_FILE
    db = Database.for_data_dir(settings.database_url, settings.data_dir)
    try:
        await db.migrate()
        commands = Commands(db=db, clock=SystemClock(), settings=settings,
                            gateway_public_key=_wireguard_public(data_dir))
        await commands.ensure_pools()
        async with db.read() as conn:
            has_ops = any(
                t.role is Role.OPS and t.revoked_at is None for t in await list_tokens(conn)
            )
        token = None
        if not has_ops:
            token = (
                await commands.issue_ops_token(label="initial ops token", actor=_actor())
            ).secret
    finally:
        await db.dispose()
    doc = {
        "data_dir": str(data_dir),
        "config": str(config_path),
        "database": settings.database_url.split("@")[-1],
        "ops_token": token,
    }
    if args.json:
        print(json.dumps(doc))
    elif token:
        print(f"vpngw initialised in {data_dir}")
        print(f"First ops token (shown once, keep it safe):\n{token}")
        print(
            "First ops user for the web console (/console): "
            f"vpngw user invite --data-dir {data_dir} --email you@example.com --role ops"
        )
        if settings.approvals.required:
            print("Two-person control is on ([approvals] in gateway.toml): regulator keys, "
                  "ops tokens, disabling ops users, retention and egress changes wait for a "
                  "second ops principal's approval (vpngw approval list)")
    else:
        print(
            f"vpngw already initialised in {data_dir}; the ops token was shown at first init "
            "(`vpngw token issue-ops` mints another)"
        )
    return 0


# --- serve ----------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from gateway.app import create_app
    from gateway.egress.plan import plan_egress
    from gateway.gcpolicy import settled_gc_ctx
    from gateway.logging import configure_logging

    settings = _settings(args)
    overrides: dict[str, Any] = {}
    if args.listen:
        overrides["server"] = {"listen": args.listen}
    if args.wireguard:
        overrides["wireguard"] = {"backend": args.wireguard}
    if overrides:
        settings = settings.replace(**overrides)
    configure_logging(level=settings.server.log_level, fmt=settings.server.log_format)
    on_this_host = settings.wireguard.backend != "off"
    # Refuse impossible egress settings before anything starts, naming what to change.
    egress = asyncio.run(plan_egress(settings, on_this_host=on_this_host))
    app = create_app(settings, egress=egress)
    app.cleanup_ctx.append(settled_gc_ctx)  # last: freezes what start-up made
    web.run_app(
        app,
        host=settings.listen_host,
        port=settings.listen_port,
        ssl_context=server_ssl_context(settings),
        print=None,
        access_log=None,
        shutdown_timeout=5.0,
    )
    return 0


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS for `vpngw serve` from server.tls_cert/tls_key; None serves plain HTTP."""
    if not settings.server.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.server.tls_cert, settings.server.tls_key)
    return context


def _settings(args: argparse.Namespace) -> Settings:
    data_dir = Path(args.data_dir)
    if not (data_dir / CONFIG_FILE).exists():
        raise CliError(f"{data_dir} is not initialised; run `vpngw init --data-dir {data_dir}`")
    return load_settings(data_dir)


# --- ops commands ----------------------------------------------------------------------


def _wireguard_public(data_dir: Path | str) -> str | None:
    from gateway.keyfiles import load_keys

    try:
        return load_keys(Path(data_dir)).wireguard_public
    except (OSError, ValueError):  # keys not readable by this user: leave the stored one
        return None


async def _with_commands(args: argparse.Namespace, action: Any) -> Any:
    from gateway.clock import SystemClock
    from gateway.commands import Commands
    from gateway.db import Database

    settings = _settings(args)
    db = Database.for_data_dir(settings.database_url, settings.data_dir, pool_size=2)
    try:
        await db.migrate()
        commands = Commands(db=db, clock=SystemClock(), settings=settings,
                            gateway_public_key=_wireguard_public(settings.data_dir))
        await commands.ensure_pools()
        return await action(commands)
    finally:
        await db.dispose()


TENANT_COLUMNS = ("id", "status", "legal_name", "country", "registration_number", "max_peers")


async def _tenant(args: argparse.Namespace) -> int:
    from gateway.api.views import tenant_view, transition_view
    from provisioning import tenants
    from provisioning.tenants import NewTenant, TenantStatus

    async def run(c: Any) -> Any:
        if args.tenant_cmd == "create":
            body = {
                "legal_name": args.legal_name,
                "registration_number": args.registration_number,
                "tax_id": args.tax_id,
                "country": args.country,
                "contact_email": args.contact_email,
            }
            if args.max_peers is not None:
                body["max_peers"] = args.max_peers
            new = NewTenant.parse(body, default_max_peers=c.settings.tenants.default_max_peers)
            return tenant_view(await c.create_tenant(new, actor=_actor()))
        if args.tenant_cmd == "list":
            async with c.db.read() as conn:
                found = await tenants.list_tenants(
                    conn,
                    limit=args.limit,
                    after=None,
                    status=TenantStatus(args.status) if args.status else None,
                )
            return [tenant_view(t) for t in found]
        if args.tenant_cmd == "show":
            async with c.db.read() as conn:
                tenant = await tenants.get_tenant(conn, args.tenant_id)
                history = await tenants.list_transitions(conn, args.tenant_id)
            return {**tenant_view(tenant), "history": [transition_view(h) for h in history]}
        if args.tenant_cmd == "verify":
            return tenant_view(
                await c.verify_tenant(
                    args.tenant_id, evidence_reference=args.evidence, note=args.note, actor=_actor()
                )
            )
        method = {
            "suspend": c.suspend_tenant,
            "reinstate": c.reinstate_tenant,
            "terminate": c.terminate_tenant,
        }[args.tenant_cmd]
        return tenant_view(await method(args.tenant_id, reason=args.reason, actor=_actor()))

    doc = await _with_commands(args, run)
    if args.tenant_cmd == "show" and not args.json:
        history = doc.pop("history")
        _emit(args, doc)
        print()
        _print_table(history, ("at", "from", "to", "actor", "evidence_reference", "reason"))
    else:
        _emit(args, doc, TENANT_COLUMNS)
    return 0


async def _token(args: argparse.Namespace) -> int:
    from gateway.api.views import token_view
    from provisioning import tokens

    async def run(c: Any) -> Any:
        if args.credential_cmd == "issue":
            issued = await c.issue_tenant_token(args.tenant_id, label=args.label, actor=_actor())
            return {"id": issued.token_id, "tenant_id": issued.tenant_id, "token": issued.secret}
        if args.credential_cmd == "issue-ops":
            if c.settings.approvals.required and await _anyone_to_approve(c):
                return await _request_ops_token(c, args.label)
            issued = await c.issue_ops_token(label=args.label, actor=_actor())
            return {"id": issued.token_id, "token": issued.secret}
        if args.credential_cmd == "revoke":
            return token_view(await c.revoke_token(args.token_id, actor=_actor()))
        async with c.db.read() as conn:
            return [token_view(t) for t in await tokens.list_tokens(conn, tenant_id=args.tenant)]

    doc = await _with_commands(args, run)
    columns = ("id", "role", "tenant_id", "label", "created_at", "revoked_at")
    _emit(args, doc, columns if args.credential_cmd in {"list", "revoke"} else None)
    return 0


async def _request_ops_token(c: Any, label: str) -> dict[str, Any]:
    """Under two-person control: the token now, working once another principal approves."""
    from provisioning import tokens
    from provisioning.tokens import Role

    token_id, bearer, secret_hash = tokens.mint(Role.OPS)
    approval = await _approvals(c).request(
        "ops_token.issue", {"token_id": token_id, "secret_hash": secret_hash, "label": label},
        actor=_actor(),
    )
    return {"id": token_id, "token": bearer, "approval_id": approval.id,
            "works": "once a second ops principal approves: "
                     f"vpngw approval approve {approval.id}"}


async def _anyone_to_approve(c: Any) -> bool:
    """Whether an ops principal exists besides the CLI. Without one (the first token was
    lost before anyone else was added), a new ops token is issued directly, as by init."""
    from provisioning.accounts.users import UserRole, UserStatus, list_users
    from provisioning.tokens import Role, list_tokens

    async with c.db.read() as conn:
        if any(t.role is Role.OPS and t.revoked_at is None for t in await list_tokens(conn)):
            return True
        return any(u.role is UserRole.OPS and u.status is UserStatus.ACTIVE
                   for u in await list_users(conn))


def _approvals(c: Any) -> Any:
    from gateway.approvals.service import Approvals

    a = c.settings.approvals
    return Approvals(commands=c, required=a.required, expiry_hours=a.expiry_hours)


APPROVAL_COLUMNS = ("id", "status", "kind", "subject", "requested_by", "expires_at",
                    "decided_by")


async def _approval(args: argparse.Namespace) -> int:
    from gateway.approvals.policy import Status

    async def run(c: Any) -> Any:
        approvals = _approvals(c)
        await approvals.expire_due()
        if args.approval_cmd == "list":
            status = None if args.all else Status(args.status)
            return [approvals.view(a) for a in await approvals.list(status=status,
                                                                   limit=args.limit)]
        if args.approval_cmd == "show":
            return approvals.view(await approvals.get(args.approval_id))
        if args.approval_cmd == "approve":
            approval, result = await approvals.grant(args.approval_id, actor=_actor())
            return {**approvals.view(approval), "result": result}
        return approvals.view(
            await approvals.reject(args.approval_id, actor=_actor(), reason=args.reason)
        )

    doc = await _with_commands(args, run)
    if isinstance(doc, list) and not args.json:
        doc = [{**d, "subject": " ".join(f"{k}={v}" for k, v in d["subject"].items())}
               for d in doc]
    _emit(args, doc, APPROVAL_COLUMNS if isinstance(doc, list) else None)
    return 0


async def _user(args: argparse.Namespace) -> int:
    from gateway.accounts import Accounts
    from gateway.clock import SystemClock
    from gateway.db import Database
    from gateway.web.views import user_view
    from provisioning.accounts.passwords import Passwords
    from provisioning.accounts.users import UserRole

    settings = _settings(args)
    db = Database.for_data_dir(settings.database_url, settings.data_dir, pool_size=2)
    try:
        await db.migrate()
        accounts = Accounts(db=db, clock=SystemClock(), passwords=Passwords())
        if args.user_cmd == "invite":
            invitation = await accounts.invite(
                email=args.email, role=UserRole(args.role), tenant_id=args.tenant, actor=_actor()
            )
            doc: Any = {
                "user_id": invitation.user.id,
                "email": invitation.user.email,
                "role": invitation.user.role.value,
                "url": f"{settings.public_url}/invitations/{invitation.token}",
                "expires_at": invitation.expires_at.isoformat(),
            }
            _emit(args, doc)
            if not args.json:
                print("Open the url (once, before it expires) to set a password"
                      + (" and a second factor." if args.role == "ops" else "."))
            return 0
        if args.user_cmd == "disable":
            doc = await _disable_user(settings, db, accounts, args.user_id)
        else:
            doc = [user_view(u) for u in await accounts.list_users(tenant_id=args.tenant)]
    finally:
        await db.dispose()
    _emit(args, doc, ("id", "email", "role", "tenant_id", "status", "second_factor"))
    return 0


async def _disable_user(settings: Settings, db: Any, accounts: Any, user_id: str) -> Any:
    """An ops user is disabled only once a second principal approves (approvals on)."""
    from gateway.clock import SystemClock
    from gateway.commands import Commands
    from gateway.web.views import user_view
    from provisioning.accounts import users
    from provisioning.accounts.users import UserRole

    async with db.read() as conn:
        target = await users.get_user(conn, user_id)
    if settings.approvals.required and target.role is UserRole.OPS:
        commands = Commands(db=db, clock=SystemClock(), settings=settings)
        approval = await _approvals(commands).request(
            "ops_user.disable", {"user_id": user_id}, actor=_actor()
        )
        print(f"vpngw: requested; approval {approval.id} waits for a second ops principal "
              f"(vpngw approval approve {approval.id})", file=sys.stderr)
        return user_view(target)
    return user_view(await accounts.disable(user_id, actor=_actor()))


# --- parser ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", default="./data", help="data directory (default ./data)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    parser = argparse.ArgumentParser(prog="vpngw", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str, *, leaf: bool = True) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, parents=[common] if leaf else [])

    init = add("init", "create config, keys and database; print the first ops token")
    init.add_argument("--endpoint", help="public HOST:PORT clients connect to")
    init.add_argument("--pool", action="append", help="tunnel address pool CIDR (repeatable)")
    init.add_argument("--wireguard", choices=["kernel", "userspace", "off"])
    init.add_argument("--interface", help="WireGuard interface name")
    init.add_argument("--listen", help="API HOST:PORT")
    init.add_argument("--allow-plain-http", action="store_true",
                      help="serve plain HTTP on a non-loopback --listen (server.allow_plain_http:"
                      " behind a TLS proxy or on a network you trust)")
    init.add_argument("--database-url", help="postgresql+asyncpg://... (default: SQLite file)")
    init.add_argument("--egress-interface",
                      help="interface towards the internet (default: the default route's)")
    init.add_argument("--egress-address", action="append",
                      help="public IPv4 address traffic leaves from (repeatable, in order; "
                      "default: the egress interface's address)")

    serve = add("serve", "run the API, sequencer, reconciler and collector")
    serve.add_argument("--listen", help="API HOST:PORT (overrides server.listen)")
    serve.add_argument(
        "--wireguard",
        choices=["kernel", "userspace", "off"],
        help="WireGuard backend (overrides wireguard.backend)",
    )

    tenant = add("tenant", "onboard and manage tenants", leaf=False)
    tsub = tenant.add_subparsers(dest="tenant_cmd", required=True)
    tsub.add_parser = functools.partial(tsub.add_parser, parents=[common])  # type: ignore[method-assign]
    create = tsub.add_parser("create")
    for flag in (
        "--legal-name",
        "--registration-number",
        "--tax-id",
        "--country",
        "--contact-email",
    ):
        create.add_argument(flag, required=True)
    create.add_argument("--max-peers", type=int)
    lst = tsub.add_parser("list")
    lst.add_argument("--status", choices=["pending", "verified", "suspended", "terminated"])
    lst.add_argument("--limit", type=int, default=100)
    tsub.add_parser("show").add_argument("tenant_id")
    verify = tsub.add_parser("verify")
    verify.add_argument("tenant_id")
    verify.add_argument("--evidence", required=True, help="reference of the documents checked")
    verify.add_argument("--note")
    for name in ("suspend", "reinstate", "terminate"):
        p = tsub.add_parser(name)
        p.add_argument("tenant_id")
        p.add_argument("--reason", required=True)

    token = add("token", "issue, list and revoke API tokens", leaf=False)
    ksub = token.add_subparsers(dest="credential_cmd", required=True)
    ksub.add_parser = functools.partial(ksub.add_parser, parents=[common])  # type: ignore[method-assign]
    issue = ksub.add_parser("issue", help="issue a tenant token")
    issue.add_argument("tenant_id")
    issue.add_argument("--label", default="tenant api")
    ksub.add_parser("issue-ops", help="issue an ops token").add_argument("--label", default="ops")
    ksub.add_parser("revoke").add_argument("token_id")
    ksub.add_parser("list").add_argument("--tenant")

    user = add("user", "invite, list and disable people (web portal and console)", leaf=False)
    usub = user.add_subparsers(dest="user_cmd", required=True)
    usub.add_parser = functools.partial(usub.add_parser, parents=[common])  # type: ignore[method-assign]
    invite = usub.add_parser("invite", help="print a one-time invitation link")
    invite.add_argument("--email", required=True)
    invite.add_argument("--role", choices=["ops", "tenant"], required=True)
    invite.add_argument("--tenant", help="tenant id (for --role tenant)")
    usub.add_parser("list").add_argument("--tenant")
    usub.add_parser("disable").add_argument("user_id")

    approval = add("approval", "two-person control: list, approve and reject requests",
                   leaf=False)
    psub = approval.add_subparsers(dest="approval_cmd", required=True)
    psub.add_parser = functools.partial(psub.add_parser, parents=[common])  # type: ignore[method-assign]
    plist = psub.add_parser("list", help="pending approvals (newest first)")
    plist.add_argument("--status", default="pending",
                       choices=["pending", "granted", "rejected", "expired"])
    plist.add_argument("--all", action="store_true", help="every state")
    plist.add_argument("--limit", type=int, default=100)
    psub.add_parser("show").add_argument("approval_id")
    psub.add_parser("approve", help="perform the operation (as a different principal)"
                    ).add_argument("approval_id")
    preject = psub.add_parser("reject", help="refuse it (or withdraw your own request)")
    preject.add_argument("approval_id")
    preject.add_argument("--reason")

    from gateway import gateway_cli
    from gateway.agent import main as agent_main

    gateway_cli.add_parser(sub, common)
    agent_main.add_parser(sub)

    audit = add("audit", "verify the audit log, print its checkpoint, list entries", leaf=False)
    asub = audit.add_subparsers(dest="audit_cmd", required=True)
    asub.add_parser = functools.partial(asub.add_parser, parents=[common])  # type: ignore[method-assign]
    verify_cmd = asub.add_parser(
        "verify",
        help="recompute the whole log and check every signed checkpoint; "
        "exit 1 naming the first bad index",
    )
    verify_cmd.add_argument("--checkpoint", action="append", metavar="FILE",
                            help="a signed checkpoint kept outside the database (repeatable); "
                            "the log must still reproduce it")
    verify_cmd.add_argument("--workers", type=int, metavar="N",
                            help="worker processes checking the entries of a large log "
                            "(default: one per core; 1: all in this process)")
    asub.add_parser("checkpoint", help="print the latest signed checkpoint and the log's vkey")
    show = asub.add_parser("show", help="list log entries (the newest N unless --since is given)")
    show.add_argument("--type", help="event type, e.g. tenant.created")
    show.add_argument("--tenant", help="tenant id")
    show.add_argument("--since", help="RFC 3339 time, inclusive")
    show.add_argument("--until", help="RFC 3339 time, exclusive")
    show.add_argument("--limit", type=int, default=100)
    return parser


def _share_globals(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from gateway.keyfiles import KeyFileError
    from provisioning.errors import DomainError

    parser = build_parser()
    args = _share_globals(parser, sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "init":
            return asyncio.run(_init(args, *_prepare_data_dir(args)))
        if args.command == "serve":
            return _serve(args)
        if args.command == "tenant":
            return asyncio.run(_tenant(args))
        if args.command == "token":
            return asyncio.run(_token(args))
        if args.command == "user":
            return asyncio.run(_user(args))
        if args.command == "approval":
            return asyncio.run(_approval(args))
        if args.command == "agent":
            from gateway.agent import main as agent_main

            return agent_main.run(args)
        if args.command == "gateway":
            from gateway import gateway_cli

            return asyncio.run(gateway_cli.run(args))
        from gateway.audit.cli import run_audit_command

        status: int = run_audit_command(args)
        return status
    except (CliError, SettingsError, DomainError, EgressConfigError, KeyFileError,
            ExposedFileError) as exc:
        detail = getattr(exc, "detail", None) or str(exc)
        print(f"vpngw: {detail}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
