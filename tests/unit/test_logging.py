"""Logs never carry secrets: tokens, keys, link tokens are masked before rendering."""

from __future__ import annotations

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
