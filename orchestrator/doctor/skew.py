"""Clock skew between this host and each store, read from the HTTP ``Date`` header of its endpoint.

``Date`` has one-second resolution, so the measured skew is ``Date`` minus this host's
time at the middle of the request, give or take half a second plus half the round trip;
the verdict allows for that. Wall clocks order nothing in mcrepl (versions are hybrid
logical clocks), but tombstone purges, breaker timers, lag and RPO figures read them, so
a host whose clock is off by more than ``failover.max_clock_skew`` fails.
"""

from __future__ import annotations

import email.utils
from typing import Iterable

import requests

from mcrepl.orchestrator.clock import SYSTEM_CLOCK, Clock
from mcrepl.orchestrator.config import is_loopback_url

from .model import Check

TIMEOUT_S = 5.0


def measure(url: str, clock: Clock = SYSTEM_CLOCK) -> tuple[float, float]:
    """``(skew_seconds, uncertainty_seconds)`` of the server at ``url`` against ``clock`` (positive: server ahead)."""
    before = clock.time()
    # self-signed certificates only on this machine's emulators (the Cosmos DB emulator)
    resp = requests.head(url, timeout=TIMEOUT_S, verify=not is_loopback_url(url), allow_redirects=False)
    after = clock.time()
    date = resp.headers.get("Date")
    if not date:
        raise ValueError(f"{url} sent no Date header (HTTP {resp.status_code})")
    server = email.utils.parsedate_to_datetime(date).timestamp()
    return server + 0.5 - (before + after) / 2, 0.5 + (after - before) / 2


def skew_checks(endpoints: Iterable[tuple[str, str]], max_skew_s: float, clock: Clock = SYSTEM_CLOCK) -> list[Check]:
    """One check per ``(where, url)``: FAIL past ``max_skew_s``, WARN past half of it."""
    checks = []
    for where, url in endpoints:
        try:
            skew, plus_minus = measure(url, clock)
        except (requests.RequestException, ValueError, TypeError) as exc:
            checks.append(Check("WARN", "clock-skew", where, f"could not read the Date header of {url}: "
                                f"{type(exc).__name__}", "check that the endpoint answers HTTPS from this host"))
            continue
        beyond = abs(skew) - plus_minus                 # the least the clocks can differ by
        evidence = f"{url}: server clock {skew:+.1f}s (±{plus_minus:.1f}s) from this host's"
        if beyond > max_skew_s:
            checks.append(Check("FAIL", "clock-skew", where, evidence + f", beyond failover.max_clock_skew "
                                f"{max_skew_s:g}s", "synchronise this host's clock (chrony/NTP)"))
        elif beyond > max_skew_s / 2:
            checks.append(Check("WARN", "clock-skew", where, evidence, "synchronise this host's clock (chrony/NTP)"))
        else:
            checks.append(Check("PASS", "clock-skew", where, evidence + f", within {max_skew_s:g}s"))
    return checks


__all__ = ["measure", "skew_checks"]
