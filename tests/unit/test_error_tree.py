"""The error tree: every error states a usable status, type and title, and they agree."""

from __future__ import annotations

import importlib
import pkgutil
import re

import gateway
import provisioning
from gateway.app import all_routes
from gateway.http.problems import Problem, problem_body, problem_response
from provisioning.accounts.errors import SigninThrottled
from provisioning.errors import DomainError, NotFound


def _every_error() -> list[type[DomainError]]:
    for package in (gateway, provisioning):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".migrations" not in module.name:
                importlib.import_module(module.name)
    found, todo = [], [DomainError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return [cls for cls in found if cls is not Problem]


def test_every_error_has_a_status_a_type_and_a_title() -> None:
    errors = _every_error()
    assert len(errors) > 40  # the walk found the tree, not just the base
    by_code: dict[str, tuple[int, str]] = {}
    for cls in errors:
        assert 400 <= cls.status <= 599, cls
        assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", cls.code), cls
        assert cls.title and cls.title[0].isupper(), cls
        # One problem type means one status and one title, whichever class raises it.
        assert by_code.setdefault(cls.code, (cls.status, cls.title)) == (cls.status, cls.title), cls


def test_routes_declare_the_status_their_errors_render_with() -> None:
    statuses = {cls.code: cls.status for cls in _every_error()}
    for route in all_routes():
        for status, codes in route.errors.items():
            for code in codes:
                if code in statuses:
                    assert statuses[code] == status, (route.path, code)


def test_an_error_renders_by_its_attributes() -> None:
    body = problem_body(NotFound("no peer with id x"))
    assert body == {"type": "urn:vpngw:problem:not-found", "title": "Not found",
                    "status": 404, "detail": "no peer with id x"}
    throttled = problem_response(SigninThrottled("wait a minute", retry_after=60))
    assert throttled.status == 429 and throttled.headers["Retry-After"] == "60"
    assert throttled.content_type == "application/problem+json"
