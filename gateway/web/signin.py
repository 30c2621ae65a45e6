"""Sign-in, sign-out and accepting an invitation (set a password and a second factor)."""

from __future__ import annotations

from aiohttp import web

from gateway.web import appkeys as web_keys
from gateway.web.render import qr_svg
from gateway.web.session import (
    PRE_SESSION_COOKIE,
    SESSION_COOKIE,
    field_error,
    form,
    page,
    pre_session_form,
    pre_session_token,
    redirect,
    set_cookie,
    signed_in,
)
from provisioning.accounts import totp
from provisioning.accounts.errors import SigninFailed
from provisioning.accounts.users import UserRole
from provisioning.errors import InvalidInput

ISSUER = "vpngw"


def _home(role: UserRole) -> str:
    return "/console" if role is UserRole.OPS else "/portal"


def _safe_next(value: str, role: UserRole) -> str:
    """Only a local path of the user's own area; never another site."""
    home = _home(role)
    if value.startswith(home) and not value.startswith("//") and "\\" not in value:
        return value
    return home


def _with_pre_session_cookie(request: web.Request, response: web.Response, token: str) -> None:
    if request.cookies.get(PRE_SESSION_COOKIE) != token:
        set_cookie(request, response, PRE_SESSION_COOKIE, token)


@page
async def signin_form(request: web.Request) -> web.StreamResponse:
    who = await signed_in(request)
    if who is not None:
        return redirect(_home(who.user.role))
    token = pre_session_token(request)
    response = request.app[web_keys.PAGES].render(
        "signin.html", csrf=token, next=request.query.get("next", ""), email=""
    )
    _with_pre_session_cookie(request, response, token)
    return response


@page
async def signin_submit(request: web.Request) -> web.StreamResponse:
    fields = await pre_session_form(request)
    accounts = request.app[web_keys.ACCOUNTS]
    email = fields.get("email", "")
    try:
        result = await accounts.sign_in(
            email=email,
            password=fields.get("password", ""),
            code=fields.get("code", ""),
            address=request.remote or "unknown",
        )
    except SigninFailed as failed:
        return request.app[web_keys.PAGES].render(
            "signin.html", status=401, csrf=fields["csrf"], next=fields.get("next", ""),
            email=email[:254], error=failed.detail,
        )
    response = redirect(_safe_next(fields.get("next", ""), result.user.role))
    set_cookie(request, response, SESSION_COOKIE, result.session.token)
    response.del_cookie(PRE_SESSION_COOKIE, path="/")
    return response


@page
async def signout(request: web.Request) -> web.StreamResponse:
    who = await signed_in(request)
    if who is not None:
        await form(request, who)
        await request.app[web_keys.ACCOUNTS].sign_out(request.cookies[SESSION_COOKIE])
    response = redirect("/signin")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@page
async def invitation_form(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    user = await request.app[web_keys.ACCOUNTS].open_invitation(token)
    secret = totp.new_secret()
    csrf = pre_session_token(request)
    response = request.app[web_keys.PAGES].render(
        "invitation.html", token=token, user=user, csrf=csrf, totp_secret=secret,
        totp_qr=qr_svg(totp.provisioning_uri(secret, account=user.email, issuer=ISSUER)),
    )
    _with_pre_session_cookie(request, response, csrf)
    return response


@page
async def invitation_submit(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    fields = await pre_session_form(request)
    accounts = request.app[web_keys.ACCOUNTS]
    user = await accounts.open_invitation(token)
    secret = fields.get("totp_secret", "")
    try:
        if fields.get("password", "") != fields.get("password_again", ""):
            raise InvalidInput("password_again", "the two passwords differ")
        await accounts.accept_invitation(
            token,
            password=fields.get("password", ""),
            totp_secret=secret or None,
            totp_code=fields.get("totp_code", ""),
        )
    except InvalidInput as error:
        try:
            uri = totp.provisioning_uri(secret, account=user.email, issuer=ISSUER)
            totp.decode_secret(secret)
        except totp.InvalidSecret:
            secret = totp.new_secret()
            uri = totp.provisioning_uri(secret, account=user.email, issuer=ISSUER)
        return request.app[web_keys.PAGES].render(
            "invitation.html", status=400, token=token, user=user, csrf=fields["csrf"],
            totp_secret=secret, totp_qr=qr_svg(uri), **field_error(error),
        )
    return redirect("/signin?activated=1")
