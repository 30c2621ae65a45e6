"""What a sealed link serves: the config as a file, or a page with its QR code for a phone."""

from __future__ import annotations

import html
import io
import json

import segno
from aiohttp import web


def render_text(conf: str, fmt: str) -> bytes:
    """A sealed config (text) in the link formats; json wraps the text."""
    if fmt == "json":
        return json.dumps({"config": conf}, indent=2).encode()
    out = io.BytesIO()
    qr = segno.make(conf, error="m")
    if fmt == "qr.svg":
        qr.save(out, kind="svg", scale=4, border=4)
    elif fmt == "qr.png":
        qr.save(out, kind="png", scale=6, border=4)
    else:
        return conf.encode()
    return out.getvalue()


def sealed_config_page(conf: str) -> web.Response:
    """One page, no script: scan the code with the WireGuard app, or copy the text."""
    qr = segno.make(conf, error="m").svg_inline(scale=5, border=4)
    page = (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width\">"
        "<title>WireGuard configuration</title></head><body>"
        "<h1>WireGuard configuration</h1>"
        "<p>Scan this code with the WireGuard app. This page is shown once: the link no "
        "longer works, and the provider keeps no copy of this device's key.</p>"
        f"{qr}<details><summary>Configuration text</summary><pre>{html.escape(conf)}</pre>"
        "</details></body></html>\n"
    )
    return web.Response(
        text=page,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; img-src data:",
            "Referrer-Policy": "no-referrer",
        },
    )
