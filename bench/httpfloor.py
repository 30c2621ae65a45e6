"""The HTTP floor beside `POST /v1/peers`: a bare aiohttp server that does only the HTTP part.

bench/provision.py runs it as a subprocess and drives it with the same client, bodies and
concurrency as the real server. It parses the same JSON body, reads the bearer token and
answers 201 with a peer-sized JSON document and a Location header, and nothing else: no
authentication, database, audit log or validation. Its CPU time per request is what HTTP
alone costs on this machine, the part of vpngw's time per peer no change to vpngw removes.

    .venv/bin/python -m bench.httpfloor --port 8099    # serves until interrupted
"""

from __future__ import annotations

import argparse
import json
import uuid

import orjson
from aiohttp import web

# About the size of vpngw's answer (the peer and its client config), so the response costs
# about the same to build and send.
_ANSWER = {
    "id": "", "name": "", "status": "active", "public_key": "",
    "tunnel_ips": ["10.64.0.2", "fd00:64::2"], "gateway_id": "gw1",
    "created_at": "2026-12-01T00:00:00Z", "expires_at": None, "revoked_at": None,
    "config_url": "", "links": {"self": "", "config": "", "qr": ""},
    # The client's WireGuard config travels in the answer too.
    "config": "[Interface]\nAddress = 10.64.0.2/32, fd00:64::2/128\nDNS = 10.64.0.1\n\n"
              "[Peer]\nPublicKey = " + "A" * 43 + "=\nAllowedIPs = 0.0.0.0/0, ::/0\n"
              "Endpoint = vpn.example.net:51820\nPersistentKeepalive = 25\n",
}


async def create_peer(request: web.Request) -> web.Response:
    if not request.headers.get("Authorization", "").startswith("Bearer "):
        return web.json_response({"title": "no token"}, status=401)
    body = await request.json(loads=json.loads)
    peer_id = str(uuid.uuid4())
    location = f"/v1/peers/{peer_id}"
    answer = {**_ANSWER, "id": peer_id, "name": body.get("name", ""),
              "public_key": body.get("public_key", ""), "config_url": f"{location}/config",
              "links": {"self": location, "config": f"{location}/config",
                        "qr": f"{location}/config.qr"}}
    return web.Response(body=orjson.dumps(answer), status=201, content_type="application/json",
                        headers={"Location": location, "Cache-Control": "no-store"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/v1/peers", create_peer)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
