"""structlog pipeline: request context, secret scrubbing, JSON off a terminal, console on one."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SECRET_KEYS = frozenset(
    {
        "token",
        "bearer",
        "authorization",
        "private_key",
        "preshared_key",
        "secret",
        "password",
        "signature",
        "link_token",
    }
)
# Bearer tokens and link URLs can hide inside free text (URLs, exception messages).
_SECRET_PATTERNS = (
    re.compile(r"vgw_[ot]_[0-9a-f]{12}_[A-Za-z0-9_-]{43}"),
    re.compile(r"(/links/)[A-Za-z0-9_-]{16,}"),
    re.compile(r"(?i)(bearer\s+)\S+"),
)
REDACTED = "[redacted]"


# What each pattern needs to match at all: one search decides whether any could (most
# values, e.g. every request's summary line, contain none of these).
_MAYBE_SECRET = re.compile(r"vgw_|/links/|(?i:bearer)")


def _scrub_text(text: str) -> str:
    if _MAYBE_SECRET.search(text) is None:
        return text
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text


def scrub_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask secret-named fields and anything shaped like a token, in every log line."""
    for key in list(event_dict):
        value = event_dict[key]
        if key.lower() in SECRET_KEYS:
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = _scrub_text(value)
    return event_dict


class _LineLogger:
    """The end of our loggers' pipeline: one rendered line onto the handler's stream."""

    __slots__ = ("_handler", "name")

    def __init__(self, handler: logging.StreamHandler[Any], name: str) -> None:
        self._handler = handler
        self.name = name  # for add_logger_name

    def msg(self, line: str) -> None:
        handler = self._handler
        # Lines of threads never interleave; like logging's handlers, a stream that fails
        # (closed, full disk) never fails the code that logs.
        with handler.lock or contextlib.nullcontext(), contextlib.suppress(Exception):
            handler.stream.write(line + "\n")
            handler.flush()

    debug = info = warning = warn = error = critical = fatal = exception = log = msg


class _LineLoggerFactory:
    def __init__(self, handler: logging.StreamHandler[Any]) -> None:
        self._handler = handler

    def __call__(self, *args: Any) -> _LineLogger:
        return _LineLogger(self._handler, str(args[0]) if args else "")


def configure_logging(*, level: str = "info", fmt: str = "auto") -> None:
    renderer: Any
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        scrub_secrets,
    ]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    # Our own loggers render straight to the handler's stream: the same processors and
    # renderer as the libraries' records get, without a stdlib LogRecord made, copied and
    # formatted for every line (that was most of the cost of each request's summary line).
    structlog.configure(
        processors=[*shared, renderer],
        logger_factory=_LineLoggerFactory(handler),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]),
        cache_logger_on_first_use=True,
    )
    # Our renderers never show the caller's file and line, thread or process: skip
    # looking them up for every record (the logging module's documented optimisations).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log would duplicate our one summary line per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
