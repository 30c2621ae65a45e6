"""Who is signed in (session cookie), CSRF checks, and the wrapper every page handler uses."""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import structlog
from aiohttp import web

from gateway.http import appkeys
from gateway.http.problems import Problem
from gateway.web import appkeys as web_keys
from gateway.web.render import secure_headers
from provisioning.accounts.sessions import SignedInUser
from provisioning.accounts.users import UserRole
from provisioning.errors import DomainError
from provisioning.tokens import Principal, Role

log = structlog.get_logger("vpngw.web")

SESSION_COOKIE = "vpngw_session"
# Before sign-in there is no session to hold a CSRF token: the sign-in and
# invitation forms use a double-submit cookie instead.
PRE_SESSION_COOKIE = "vpngw_csrf"

PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class UserPrincipal(Principal):
    """A signed-in person acting through the pages: events name the user, not a token."""

    user_id: str = ""

    @property
    def actor(self) -> str:
        return f"user:{self.user_id}"


class SignInRequired(Exception):
    """No live session: the page sends the browser to the sign-in form."""


def principal_for(signed: SignedInUser) -> UserPrincipal:
    user = signed.user
    role = Role.OPS if user.role is UserRole.OPS else Role.TENANT
    return UserPrincipal(token_id="", role=role, tenant_id=user.tenant_id, user_id=user.id)


def cookie_secure(request: web.Request) -> bool:
    return request.secure or request.app[appkeys.SETTINGS].public_url.startswith("https://")


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(
        name, value, httponly=True, secure=cookie_secure(request), samesite="Strict", path="/"
    )


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


async def signed_in(request: web.Request) -> SignedInUser | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    return await request.app[web_keys.ACCOUNTS].resolve(token)


async def require_user(request: web.Request, role: UserRole) -> SignedInUser:
    who = await signed_in(request)
    if who is None:
        raise SignInRequired()
    if who.user.role is not role:
        area = "the ops console" if role is UserRole.OPS else "a tenant portal"
        raise Problem(403, "forbidden", "Not allowed", f"your account cannot open {area}")
    structlog.contextvars.bind_contextvars(user_id=who.user.id, tenant_id=who.user.tenant_id)
    return who


def _same_origin(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    public = urlsplit(request.app[appkeys.SETTINGS].public_url)
    # Behind a TLS proxy the browser's origin is the public URL, not what this process sees.
    allowed = {f"{request.scheme}://{request.host}", f"{public.scheme}://{public.netloc}"}
    if origin is not None and origin not in allowed:
        raise Problem(403, "csrf", "Cross-site request refused",
                      "this form was posted from another site; reload the page and try again")


def _csrf_refused() -> Problem:
    return Problem(403, "csrf", "Form expired",
                   "the form's security token is missing or wrong; reload the page and try again")


async def form(request: web.Request, who: SignedInUser) -> dict[str, str]:
    """The posted fields, once the session's CSRF token in them is checked."""
    _same_origin(request)
    fields = await _fields(request)
    if not hmac.compare_digest(fields.get("csrf", "").encode(), who.csrf_token.encode()):
        raise _csrf_refused()
    return fields


async def pre_session_form(request: web.Request) -> dict[str, str]:
    _same_origin(request)
    fields = await _fields(request)
    cookie = request.cookies.get(PRE_SESSION_COOKIE, "")
    if not cookie or not hmac.compare_digest(fields.get("csrf", "").encode(), cookie.encode()):
        raise _csrf_refused()
    return fields


def pre_session_token(request: web.Request) -> str:
    return request.cookies.get(PRE_SESSION_COOKIE) or secrets.token_urlsafe(32)


async def _fields(request: web.Request) -> dict[str, str]:
    posted = await request.post()
    fields: dict[str, str] = {}
    for name, value in posted.items():
        if not isinstance(value, str):
            raise Problem(400, "invalid-input", "Invalid input", f"{name} must be a text field",
                          field=name)
        fields[name] = value
    return fields


def redirect(location: str) -> web.Response:
    response = web.Response(status=303, headers={"Location": location})
    secure_headers(response)
    return response


def page(handler: PageHandler) -> PageHandler:
    """Renders failures as an HTML page with the right status, and sets security headers."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except SignInRequired:
            return redirect("/signin?next=" + quote(request.path_qs, safe="/"))
        except DomainError as error:
            return error_page(request, error.status, error.title, error.detail, error.headers)
        return secure_headers(response, cache=request.path.startswith("/static/"))

    return wrapped


def error_page(
    request: web.Request, status: int, title: str, detail: str,
    headers: dict[str, str] | None = None,
) -> web.Response:
    pages = request.app[web_keys.PAGES]
    return pages.render("error.html", status=status, headers=headers, title=title, detail=detail)


def field_error(error: DomainError) -> dict[str, Any]:
    """Template context that puts a form error beside its field."""
    return {"error": error.detail, "error_field": getattr(error, "field", None)}
