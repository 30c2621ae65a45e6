"""Typed application state of the web pages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.accounts import Accounts
    from gateway.web.render import Pages

ACCOUNTS: web.AppKey[Accounts] = web.AppKey("accounts")
PAGES: web.AppKey[Pages] = web.AppKey("pages")
