"""`vpngw gateway add|list|show|retire|token`: the ops API's gateway calls, on the database."""

from __future__ import annotations

import argparse
import functools
from typing import Any

from gateway.cli import _actor, _emit, _with_commands

GATEWAY_COLUMNS = ("id", "name", "status", "endpoint", "pools", "public_key", "last_contact_at")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    gateway = sub.add_parser("gateway", help="register, list, show and retire gateways")
    gsub = gateway.add_subparsers(dest="gateway_cmd", required=True)
    gsub.add_parser = functools.partial(gsub.add_parser, parents=[common])
    add = gsub.add_parser("add", help="register a gateway host; prints its agent token once")
    add.add_argument("name")
    add.add_argument("--endpoint", required=True, help="public HOST:PORT its clients connect to")
    add.add_argument("--pool", help="IPv4 tunnel pool (default: the next free /23)")
    add.add_argument("--pool6", help="IPv6 tunnel pool (default: the next free /64)")
    add.add_argument("--egress-address", action="append",
                     help="public IPv4 address its traffic leaves from (repeatable, in order)")
    add.add_argument("--egress-interface", help="its interface towards the internet")
    add.add_argument("--egress-ports", help='"first-last" (default 1024-65535)')
    add.add_argument("--egress-block-size", help='ports per peer, or "auto"')
    gsub.add_parser("list")
    gsub.add_parser("show").add_argument("gateway_id")
    retire = gsub.add_parser("retire", help="retire an empty gateway; revokes its agent tokens")
    retire.add_argument("gateway_id")
    retire.add_argument("--reason", required=True)
    token = gsub.add_parser("token", help="issue another agent token for a gateway")
    token.add_argument("gateway_id")
    token.add_argument("--label", default="agent")


def _egress(args: argparse.Namespace) -> dict[str, Any] | None:
    if not args.egress_address:
        return None
    body: dict[str, Any] = {"addresses": args.egress_address}
    if args.egress_interface:
        body["interface"] = args.egress_interface
    if args.egress_ports:
        body["ports"] = args.egress_ports
    if args.egress_block_size:
        size = args.egress_block_size
        body["block_size"] = int(size) if size.isdigit() else size
    return body


async def run(args: argparse.Namespace) -> int:
    from gateway.api.gateways import gateway_view
    from gateway.egress.requested import parse_egress
    from provisioning import gateways
    from provisioning.gateways import NewGateway

    async def step(c: Any) -> Any:
        default_id = c.settings.network.gateway_id
        if args.gateway_cmd == "add":
            new = NewGateway.parse(
                {"name": args.name, "endpoint": args.endpoint, "pool": args.pool,
                 "pool6": args.pool6}
            )
            egress = _egress(args)
            gateway, issued = await c.register_gateway(
                new, parse_egress(egress) if egress is not None else None, actor=_actor()
            )
            return {**gateway_view(gateway, default_id=default_id),
                    "agent_token": issued.secret}
        if args.gateway_cmd == "list":
            async with c.db.read() as conn:
                found = await gateways.list_gateways(conn)
            return [gateway_view(g, default_id=default_id) for g in found]
        if args.gateway_cmd == "show":
            async with c.db.read() as conn:
                gateway = await gateways.get_gateway(conn, args.gateway_id)
                active = await gateways.count_active_peers(conn, args.gateway_id)
            return {**gateway_view(gateway, default_id=default_id), "active_peers": active}
        if args.gateway_cmd == "token":
            issued = await c.issue_agent_token(args.gateway_id, label=args.label, actor=_actor())
            return {"id": issued.token_id, "gateway_id": args.gateway_id, "token": issued.secret}
        retired = await c.retire_gateway(args.gateway_id, reason=args.reason, actor=_actor())
        return gateway_view(retired, default_id=default_id)

    doc = await _with_commands(args, step)
    _emit(args, doc, GATEWAY_COLUMNS if args.gateway_cmd == "list" else None)
    return 0
