"""JSON Schemas of what the APIs take and return (the shapes gateway.api.views produces).

The bounds here are the validators' own constants, and tests drive the server with the
boundary values this document states, so the description and the server cannot drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.http.params import id_schema, time_schema
from gateway.http.routes import Schema, obj, ref
from provisioning import ids, peers, tenants
from provisioning.tokens import TOKEN_ID, Role
from provisioning.validation import IdFormat

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
BOOLEAN: Schema = {"type": "boolean"}
TIME = time_schema()
UUID = id_schema(ids.UUID)


def nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"oneOf": [dict(schema), {"type": "null"}]}
    doc = {**schema, "type": [schema.get("type", "string"), "null"]}
    if "enum" in doc:
        doc["enum"] = [*doc["enum"], None]
    return doc


def text(max_len: int, *, min_len: int = 1, description: str = "") -> Schema:
    """validation.text: printable, no control characters, no surrounding whitespace."""
    doc: dict[str, Any] = {"type": "string", "minLength": min_len, "maxLength": max_len}
    if description:
        doc["description"] = description
    return doc


def ascii_reference(max_len: int, description: str = "") -> Schema:
    """validation.reference: printable ASCII, no surrounding spaces."""
    return {
        **text(max_len, description=description),
        "pattern": r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$",
    }


# Standard base64 of 32 bytes: 43 characters, the last one carrying 4 bits, then "=".
WG_KEY: Schema = {
    "type": "string",
    "pattern": "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$",
    "minLength": 44,
    "maxLength": 44,
    "description": "WireGuard key: standard base64 of 32 bytes (`wg pubkey` output)",
    "examples": ["xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="],
}
COUNTRY: Schema = {
    "type": "string",
    "pattern": "^[A-Z]{2}$",
    "description": "ISO 3166-1 alpha-2 code in capitals",
    "examples": ["PK"],
}
EMAIL: Schema = {"type": "string", "format": "email", "minLength": 3, "maxLength": 254}
TENANT_STATUS = ref("TenantStatus")
PEER_STATUS = ref("PeerStatus")
ROLE = ref("TokenRole")
BASE64: Schema = {"type": "string", "contentEncoding": "base64"}
REASON = text(tenants.REASON_MAX)
IP: Schema = {"type": "string", "description": "IPv4 or IPv6 address"}


def record(properties: Mapping[str, Schema], *, optional: tuple[str, ...] = ()) -> Schema:
    """A response object: every property is present unless listed optional; more may appear."""
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
    }


def page(item: str, next_schema: Schema) -> Schema:
    return record(
        {
            "items": {"type": "array", "items": ref(item)},
            "next": {
                **nullable(next_schema),
                "description": "Pass as `after` to get the next page; null on the last page",
            },
        }
    )


NEW_TENANT = obj(
    {
        "legal_name": text(tenants.LEGAL_NAME_MAX),
        "registration_number": ascii_reference(tenants.REFERENCE_MAX),
        "tax_id": ascii_reference(tenants.REFERENCE_MAX),
        "country": COUNTRY,
        "contact_email": EMAIL,
        "max_peers": {
            "type": "integer",
            "minimum": 1,
            "maximum": tenants.MAX_PEERS_LIMIT,
            "description": "Quota of active peers (default from the gateway's settings)",
        },
    },
    "legal_name",
    "registration_number",
    "tax_id",
    "country",
    "contact_email",
)

NEW_PEER = obj(
    {
        "name": text(peers.NAME_MAX, description="e.g. the device or its user"),
        "public_key": {
            **WG_KEY,
            "description": "The device's public key (preferred); leave out to have "
            "the server generate a key pair and return the private key once",
        },
        "preshared_key": {**BOOLEAN, "default": False},
        "expires_at": {**TIME, "description": "When the peer expires (in the future)"},
        "link": {
            **BOOLEAN,
            "default": False,
            "description": "Without public_key: hand the config over only through a sealed "
            "one-time link (returned as `link`), never in this response",
        },
        "gateway_id": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._-]{1,64}$",
            "maxLength": 64,
            "description": "The gateway the peer belongs to; default: the tenant's default "
            "gateway if ops set one, else the gateway with the most free addresses",
        },
    },
    "name",
)

TENANT_PROPERTIES: dict[str, Schema] = {
    "id": UUID,
    "legal_name": STRING,
    "registration_number": STRING,
    "tax_id": STRING,
    "country": COUNTRY,
    "contact_email": STRING,
    "max_peers": INTEGER,
    "status": TENANT_STATUS,
    "created_at": TIME,
    "updated_at": TIME,
}

EGRESS: Schema = record(
    {
        "address": IP,
        "first_port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "last_port": {"type": "integer", "minimum": 1, "maximum": 65535},
    }
)

QUERY_FIELD_SCHEMAS: dict[str, Schema] = {
    "ip": IP,
    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "at": TIME,
    "from": TIME,
    "to": TIME,
    "tenant_id": UUID,
    "peer_id": UUID,
}


def query_schema_name(kind: str) -> str:
    """attribution.tunnel_ip -> AttributionTunnelIpQuery"""
    return "".join(part.capitalize() for part in kind.replace(".", "_").split("_")) + "Query"


def query_kinds(query_fields: dict[str, tuple[set[str], set[str]]]) -> dict[str, Schema]:
    """One schema per regulator query kind, from the parser's own table of kinds and fields."""
    kinds: dict[str, Schema] = {}
    for kind, (allowed, required) in sorted(query_fields.items()):
        properties: dict[str, Schema] = {"kind": {"type": "string", "enum": [kind]}}
        properties.update({f: QUERY_FIELD_SCHEMAS[f] for f in sorted(allowed - {"kind"})})
        kinds[query_schema_name(kind)] = {
            "type": "object",
            "additionalProperties": False,
            "properties": properties,
            "required": sorted(required),
        }
    return kinds


def regulator_query(query_fields: dict[str, tuple[set[str], set[str]]]) -> Schema:
    names = {kind: query_schema_name(kind) for kind in sorted(query_fields)}
    return {
        "oneOf": [ref(name) for name in names.values()],
        "discriminator": {
            "propertyName": "kind",
            "mapping": {kind: f"#/components/schemas/{name}" for kind, name in names.items()},
        },
    }


def components(
    *, query_fields: dict[str, tuple[set[str], set[str]]], keyid: IdFormat
) -> dict[str, Schema]:
    peer = {
        "id": UUID,
        "name": STRING,
        "public_key": WG_KEY,
        "tunnel_ips": {"type": "array", "items": IP},
        "status": PEER_STATUS,
        "preshared_key": {**BOOLEAN, "description": "Whether the peer has a preshared key"},
        "created_at": TIME,
        "expires_at": nullable(TIME),
        "revoked_at": nullable(TIME),
        "key_rotated_at": nullable(TIME),
        "private_key": {
            **WG_KEY,
            "description": "Only in the response that generated it on the server; never again",
        },
        "config": {
            "type": "string",
            "description": "wg-quick config with the private key; only beside `private_key`",
        },
        "connection": ref("Connection"),
        "egress": ref("Egress"),
        "link": ref("Link"),  # the sealed one-time link, when the request asked for one
    }
    return {
        "TenantStatus": {"type": "string", "enum": [s.value for s in tenants.TenantStatus]},
        "PeerStatus": {"type": "string", "enum": list(peers.STATUSES)},
        "TokenRole": {"type": "string", "enum": [r.value for r in Role]},
        "Problem": record(
            {
                "type": {
                    "type": "string",
                    "description": "Stable identifier: urn:vpngw:problem:<code>",
                    "examples": ["urn:vpngw:problem:invalid-input"],
                },
                "title": STRING,
                "status": INTEGER,
                "detail": {"type": "string", "description": "What went wrong and what to fix"},
                "field": {"type": "string", "description": "The input field at fault"},
                "request_id": {
                    "type": "string",
                    "description": "Also in the X-Request-Id header; quote it to support",
                },
                "check": {
                    "type": "string",
                    "description": "For a refused regulator signature: the check that failed",
                },
                "tenant_status": {
                    "type": "string",
                    "description": "For an illegal transition: the tenant's current state",
                },
            },
            optional=("field", "request_id", "check", "tenant_status"),
        ),
        "NewTenant": NEW_TENANT,
        "Tenant": record(TENANT_PROPERTIES),
        "TenantDetail": record(
            {
                **TENANT_PROPERTIES,
                "active_peers": INTEGER,
                "history": {"type": "array", "items": ref("Transition")},
                "tokens": {"type": "array", "items": ref("TokenInfo")},
            }
        ),
        "TenantPage": page("Tenant", UUID),
        "Transition": record(
            {
                "from": nullable(TENANT_STATUS),
                "to": TENANT_STATUS,
                "actor": STRING,
                "at": TIME,
                "evidence_reference": nullable(STRING),
                "reason": nullable(STRING),
            }
        ),
        "TokenInfo": record(
            {
                "id": id_schema(TOKEN_ID),
                "role": ROLE,
                "tenant_id": nullable(UUID),
                "label": STRING,
                "created_at": TIME,
                "created_by": STRING,
                "revoked_at": nullable(TIME),
            }
        ),
        "IssuedToken": record(
            {
                "id": id_schema(TOKEN_ID),
                "token": {
                    "type": "string",
                    "pattern": "^vgw_[ot]_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$",
                    "description": "The bearer token; shown once, only its hash is stored",
                },
                "role": ROLE,
                "tenant_id": nullable(UUID),
                "label": STRING,
            }
        ),
        "NewPeer": NEW_PEER,
        "Peer": record(
            peer, optional=("private_key", "config", "connection", "egress", "link")
        ),
        "PeerPage": page("Peer", UUID),
        "Connection": record(
            {
                "connected": BOOLEAN,
                "latest_handshake": nullable(TIME),
                "endpoint": nullable({"type": "string", "description": "ip:port"}),
                "rx_bytes": INTEGER,
                "tx_bytes": INTEGER,
            }
        ),
        "Egress": EGRESS,
        "EgressMapping": record(
            {
                "enabled": BOOLEAN,
                "interface": STRING,
                "gateway_id": STRING,
                "pool": {"type": "string", "description": "IPv4 tunnel pool (CIDR)"},
                "addresses": {"type": "array", "items": IP},
                "ports": {"type": "string", "description": "first-last port, e.g. 1024-65535"},
                "block_size": INTEGER,
                "ipv6": BOOLEAN,
                "blocked": {"type": "array", "items": STRING},
                "pool6": STRING,
                "addresses6": {"type": "array", "items": IP},
                "blocks_per_address": INTEGER,
                "capacity": INTEGER,
                "held": {"type": "object", "description": "Changed egress settings waiting "
                         "for approval (two-person control), as egress.configured would log "
                         "them; POST /ops/v1/egress/change-requests asks for them"},
            },
            optional=(
                "interface", "gateway_id", "pool", "addresses", "ports", "block_size", "ipv6",
                "blocked", "pool6", "addresses6", "blocks_per_address", "capacity", "held",
            ),
        ),
        "Link": record(
            {
                "url": {"type": "string", "format": "uri"},
                "expires_at": TIME,
            }
        ),
        "ClientConfig": record(
            {
                "name": STRING,
                "interface": record(
                    {
                        "addresses": {"type": "array", "items": STRING},
                        "dns": {"type": "array", "items": IP},
                        "private_key": WG_KEY,
                    },
                    optional=("private_key",),
                ),
                "peer": record(
                    {
                        "public_key": WG_KEY,
                        "endpoint": STRING,
                        "allowed_ips": {"type": "array", "items": STRING},
                        "persistent_keepalive": INTEGER,
                        "preshared_key": WG_KEY,
                    },
                    optional=("preshared_key",),
                ),
            }
        ),
        "AuditEntry": record(
            {
                "index": INTEGER,
                "type": STRING,
                "ts": TIME,
                "tenant_id": nullable(UUID),
                "peer_id": nullable(UUID),
                "leaf_hash": BASE64,
                "redacted": {**BOOLEAN, "description": "Payload erased by retention"},
                "event": {
                    "type": ["object", "null"],
                    "description": "The event as logged (null once redacted)",
                },
            }
        ),
        "AuditPage": page("AuditEntry", INTEGER),
        "NewRegulatorKey": obj(
            {
                "keyid": id_schema(keyid),
                "public_key": {
                    **BASE64,
                    "pattern": "^[A-Za-z0-9+/]{43}=$",
                    "description": "Base64 of the 32-byte Ed25519 public key",
                },
                "label": text(200),
            },
            "keyid",
            "public_key",
            "label",
        ),
        "RegulatorKey": record(
            {
                "keyid": STRING,
                "public_key": BASE64,
                "label": STRING,
                "created_at": TIME,
                "created_by": STRING,
                "revoked_at": nullable(TIME),
            }
        ),
        "RegulatorKeyList": record({"items": {"type": "array", "items": ref("RegulatorKey")}}),
        **approval_schemas(),
        "GatewayKeys": record(
            {
                "log": record({"origin": STRING, "vkey": STRING}),
                "response": record({"keyid": STRING, "public_key": BASE64}),
            }
        ),
        "RegulatorRequestId": obj(
            {
                "country": COUNTRY,
                "authority": ascii_reference(64),
                "number": ascii_reference(64),
            },
            "country",
            "authority",
            "number",
        ),
        "Authorisation": obj(
            {
                "reference": ascii_reference(128),
                "legal_basis": text(200),
                "valid_from": TIME,
                "valid_until": TIME,
            },
            "reference",
            "legal_basis",
            "valid_from",
            "valid_until",
        ),
        "RegulatorQuery": regulator_query(query_fields),
        **query_kinds(query_fields),
        "RegulatorRequest": obj(
            {
                "request_id": ref("RegulatorRequestId"),
                "authorisation": ref("Authorisation"),
                "query": ref("RegulatorQuery"),
                "max_hits": {"type": "integer", "minimum": 1, "default": 100},
            },
            "request_id",
            "authorisation",
            "query",
        ),
        "RegulatorAnswer": record(
            {
                "request_id": ref("RegulatorRequestId"),
                "query": ref("RegulatorQuery"),
                "truncated": BOOLEAN,
                "checkpoint": {"type": "string", "description": "C2SP signed note"},
                "records": {
                    "type": "array",
                    "items": record(
                        {
                            "index": INTEGER,
                            "leaf": BASE64,
                            "event": {"type": "object"},
                            "inclusion_proof": {"type": "array", "items": BASE64},
                        }
                    ),
                },
                "derivation": {
                    **record(
                        {
                            "gateway_id": STRING,
                            "tunnel_ip": IP,
                            "first_port": {"type": "integer", "minimum": 1, "maximum": 65535},
                            "last_port": {"type": "integer", "minimum": 1, "maximum": 65535},
                        }
                    ),
                    "description": "attribution.egress only: the port block the public "
                    "ip:port falls in and the tunnel address it maps to",
                },
            },
            optional=("derivation",),
        ),
        "TransparencyReport": record(
            {
                "report": {
                    "type": "object",
                    "description": "vpngw-transparency-report/1: counts of lawful-access "
                    "queries in the quarter and the log range they cover",
                },
                "note": {"type": "string", "description": "The report signed by the log key"},
            }
        ),
        "ConsistencyProof": {"type": "array", "items": BASE64},
        "Health": record({"status": STRING}),
        "Readiness": record(
            {
                "status": {"type": "string", "enum": ["ready", "not ready"]},
                "components": {
                    "type": "object",
                    "additionalProperties": record(
                        {"ok": BOOLEAN, "detail": STRING, "since": nullable(TIME)}
                    ),
                },
            }
        ),
    }


APPROVAL_STATUSES = ("pending", "granted", "rejected", "expired")


def approval_schemas() -> dict[str, Schema]:
    """Two-person control: a sensitive operation's 202 answer and its approval."""
    approval = record(
        {
            "id": UUID,
            "kind": {"type": "string", "description": "What was requested, e.g. "
                     "regulator_key.register, regulator_key.revoke, ops_token.issue, "
                     "ops_user.disable, retention.change, egress.change"},
            "description": STRING,
            "status": {"enum": list(APPROVAL_STATUSES)},
            "subject": {"type": "object", "description": "What the operation acts on"},
            "requested_by": STRING,
            "requested_at": TIME,
            "expires_at": TIME,
            "decided_by": nullable(STRING),
            "decided_at": nullable(TIME),
            "reason": nullable(STRING),
        }
    )
    return {
        "Approval": approval,
        "ApprovalList": record({"items": {"type": "array", "items": ref("Approval")}}),
        "PendingApproval": record(
            {
                "approval": ref("Approval"),
                "token": {
                    "type": "string",
                    "pattern": "^vgw_o_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$",
                    "description": "ops_token.issue only: the bearer token, shown once; it "
                    "works once a second ops principal approves",
                },
            },
            optional=("token",),
        ),
        "GrantedApproval": record(
            {
                "approval": ref("Approval"),
                "result": {"type": "object", "description": "What the operation produced "
                           "(e.g. the RegulatorKey)"},
            }
        ),
    }
