"""A few Prometheus metrics kept in memory and rendered in the text exposition format."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._latency_counts: dict[str, list[int]] = {}
        self._latency_sum: dict[str, float] = defaultdict(float)
        self.gauges: dict[str, Callable[[], float]] = {}
        self.counters: dict[str, int] = defaultdict(int)
        self.labelled: dict[str, dict[tuple[tuple[str, str], ...], int]] = defaultdict(
            lambda: defaultdict(int)
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        counts = self._latency_counts.setdefault(route, [0] * (len(_BUCKETS) + 1))
        counts[bisect.bisect_left(_BUCKETS, seconds)] += 1
        self._latency_sum[route] += seconds

    def inc(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount

    def inc_labelled(self, name: str, labels: dict[str, str], amount: int = 1) -> None:
        """A counter with labels; callers keep label values to a small fixed set."""
        self.labelled[name][tuple(sorted(labels.items()))] += amount

    def render(self) -> str:
        out = [
            "# HELP vpngw_http_requests_total HTTP requests by method, route and status.",
            "# TYPE vpngw_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(self.requests.items()):
            out.append(
                f'vpngw_http_requests_total{{method="{method}",route="{_esc(route)}",'
                f'status="{status}"}} {n}'
            )
        out += [
            "# HELP vpngw_http_request_duration_seconds Request latency by route.",
            "# TYPE vpngw_http_request_duration_seconds histogram",
        ]
        for route, counts in sorted(self._latency_counts.items()):
            cumulative = 0
            for bound, count in zip((*_BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                out.append(
                    f"vpngw_http_request_duration_seconds_bucket"
                    f'{{route="{_esc(route)}",le="{le}"}} {cumulative}'
                )
            out.append(
                f"vpngw_http_request_duration_seconds_sum"
                f'{{route="{_esc(route)}"}} {self._latency_sum[route]}'
            )
            out.append(
                f'vpngw_http_request_duration_seconds_count{{route="{_esc(route)}"}} {cumulative}'
            )
        for name, n in sorted(self.counters.items()):
            out += [f"# TYPE vpngw_{name} counter", f"vpngw_{name} {n}"]
        for name, series in sorted(self.labelled.items()):
            out.append(f"# TYPE vpngw_{name} counter")
            for labels, n in sorted(series.items()):
                text = ",".join(f'{k}="{_esc(v)}"' for k, v in labels)
                out.append(f"vpngw_{name}{{{text}}} {n}")
        typed: set[str] = set()
        for name, read in sorted(self.gauges.items()):
            base = name.split("{", 1)[0]  # a gauge name may carry labels
            if base not in typed:
                out.append(f"# TYPE vpngw_{base} gauge")
                typed.add(base)
            out.append(f"vpngw_{name} {read()}")
        return "\n".join(out) + "\n"


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
