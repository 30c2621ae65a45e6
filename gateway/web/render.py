"""Jinja2 templates (every value escaped) and the headers every page carries."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import jinja2
import segno
from aiohttp import web

from provisioning.validation import rfc3339

TEMPLATES = Path(__file__).parent / "templates"

# No inline script or style anywhere: scripts and styles come from /static only.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Invitation and link tokens sit in URLs: never send them to another site.
    # ("no-referrer" would also make browsers send `Origin: null` on form posts.)
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def secure_headers(response: web.StreamResponse, *, cache: bool = False) -> web.StreamResponse:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not cache:
        response.headers["Cache-Control"] = "no-store"
    return response


def _when(value: Any) -> str:
    return "" if value is None else rfc3339(value).replace("T", " ").replace("Z", " UTC")


def _bytes(value: int | None) -> str:
    size = float(value or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def qr_svg(text: str) -> str:
    """A QR code as inline SVG markup (attributes only, so the CSP needs no inline style)."""
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="svg", scale=4, border=4, xmldecl=False)
    return out.getvalue().decode()


class Pages:
    """Renders a template into a response with the security headers set."""

    def __init__(self, directory: Path = TEMPLATES) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = _when
        self.env.filters["bytes"] = _bytes

    def render(
        self, template: str, *, status: int = 200, headers: dict[str, str] | None = None,
        **context: Any,
    ) -> web.Response:
        context.setdefault("me", None)
        context.setdefault("csrf", "")
        context.setdefault("error", None)
        context.setdefault("error_field", None)
        body = self.env.get_template(template).render(**context)
        response = web.Response(
            text=body, status=status, content_type="text/html", charset="utf-8", headers=headers
        )
        secure_headers(response)
        return response
