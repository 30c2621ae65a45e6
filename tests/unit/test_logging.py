"""Logs never carry secrets: tokens, keys, link tokens are masked before rendering."""

from __future__ import annotations

import pytest

from gateway.logging import REDACTED, scrub_secrets

TOKEN = "vgw_t_0123456789ab_" + "A" * 43


def test_secret_fields_are_masked() -> None:
    out = scrub_secrets(
        None,
        "info",
        {
            "event": "x",
            "private_key": "k",
            "Authorization": "b",
            "preshared_key": "p",
            "token": TOKEN,
        },
    )
    assert out["private_key"] == out["preshared_key"] == out["token"] == REDACTED
    assert out["Authorization"] == REDACTED


def test_secrets_inside_text_are_masked() -> None:
    out = scrub_secrets(
        None,
        "info",
        {
            "event": f"failed with {TOKEN}",
            "url": "https://vpn.test/links/abcdefghijklmnopqrstuvwx?format=conf",
            "header": "Bearer something-secret",
        },
    )
    assert TOKEN not in out["event"] and REDACTED in out["event"]
    assert "abcdefghijklmnop" not in out["url"] and out["url"].startswith("https://vpn.test/links/")
    assert "something-secret" not in out["header"]


def test_request_log_line_has_no_token(capsys: object) -> None:
    import structlog

    from gateway.logging import configure_logging

    configure_logging(fmt="json")
    with structlog.testing.capture_logs(processors=[scrub_secrets]) as logs:
        structlog.get_logger("t").info("auth failed", token=TOKEN, detail=f"bad {TOKEN}")
    assert logs[0]["token"] == REDACTED and TOKEN not in logs[0]["detail"]


def test_our_lines_and_library_lines_share_one_format(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import logging

    import structlog

    from gateway.logging import configure_logging

    configure_logging(fmt="json", level="info")
    try:
        log = structlog.get_logger("vpngw.test")
        log.info("request", status=201, detail=f"bad {TOKEN}")
        log.debug("not at this level")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed", token=TOKEN)
        logging.getLogger("somelib").warning("library says %s", "hi")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        structlog.reset_defaults()
    assert [(x["logger"], x["level"], x["event"]) for x in lines] == [
        ("vpngw.test", "info", "request"), ("vpngw.test", "error", "failed"),
        ("somelib", "warning", "library says hi")]
    assert TOKEN not in lines[0]["detail"] and lines[1]["token"] == REDACTED
    assert "ValueError: boom" in lines[1]["exception"]
    assert all(x["timestamp"].endswith("Z") for x in lines)
