"""pytest plugin for the kernel test VM: a skipped test fails the run, since everything the
VM exists for (root, namespaces, the wireguard module) is there."""

from __future__ import annotations

from typing import Any

import pytest

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for nodeid in _skipped:
        terminalreporter.write_line(f"SKIPPED IN THE KERNEL VM (a failure here): {nodeid}")
