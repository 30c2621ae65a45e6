"""The pages' routes and their static files, mounted beside the JSON API by app.py."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

from gateway.accounts import Accounts
from gateway.web import appkeys as web_keys
from gateway.web import approvals, console, portal, signin
from gateway.web.render import Pages
from gateway.web.session import PageHandler, page, redirect

STATIC = Path(__file__).parent / "static"
_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css"}


@page
async def static_file(request: web.Request) -> web.StreamResponse:
    """Only files shipped in the package; no directory listing, no path outside it."""
    name = request.match_info["name"]
    path = (STATIC / name).resolve()
    if not path.is_relative_to(STATIC.resolve()) or not path.is_file() or name.startswith("."):
        raise web.HTTPNotFound()
    content_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    return web.Response(
        body=path.read_bytes(), content_type=content_type or "application/octet-stream",
        headers={"Cache-Control": "public, max-age=300"},
    )


@page
async def home(request: web.Request) -> web.StreamResponse:
    return redirect("/signin")


ROUTES: list[tuple[str, str, PageHandler]] = [
    ("GET", "/", home),
    ("GET", "/signin", signin.signin_form),
    ("POST", "/signin", signin.signin_submit),
    ("POST", "/signout", signin.signout),
    ("GET", "/invitations/{token}", signin.invitation_form),
    ("POST", "/invitations/{token}", signin.invitation_submit),
    ("GET", "/static/{name:[A-Za-z0-9_./-]+}", static_file),
    *portal.ROUTES,
    *console.ROUTES,
    *approvals.ROUTES,
]


def mount_pages(app: web.Application, *, accounts: Accounts, pages: Pages | None = None) -> None:
    app[web_keys.ACCOUNTS] = accounts
    app[web_keys.PAGES] = pages or Pages()
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
