"""Divergence thresholds and the alert hook a breach calls."""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import urllib.request

from mcrepl.orchestrator.config import AlertHook, VerifyThresholds

from .report import VerifyReport

log = logging.getLogger("mcrepl.verify")


def breaches(report: VerifyReport, thresholds: VerifyThresholds) -> list[str]:
    """Human-readable breaches of ``thresholds`` (empty when within bounds)."""
    found = []
    reference_keys = max(report.keys.get(report.reference, 0), 1)
    if thresholds.max_divergent is not None and report.divergent > thresholds.max_divergent:
        found.append(f"{report.divergent} divergent keys > max_divergent {thresholds.max_divergent}")
    ratio = report.divergent / reference_keys
    if thresholds.max_ratio is not None and ratio > thresholds.max_ratio:
        found.append(f"divergence ratio {ratio:.6f} > max_ratio {thresholds.max_ratio}")
    return found


def send_alert(report: VerifyReport, hook: AlertHook, timeout_s: float = 10.0) -> list[str]:
    """Deliver the report to the configured command and/or webhook; returns delivery errors.

    A failing hook never hides the breach itself: the caller still exits non-zero.
    """
    payload = json.dumps({"event": "mcrepl.verify.breach", "report": report.to_dict()}).encode()
    errors = []
    if hook.command:
        try:
            subprocess.run(shlex.split(hook.command), input=payload, timeout=timeout_s, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(f"alert command failed: {exc}")
    if hook.webhook:
        req = urllib.request.Request(hook.webhook, data=payload, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 (configured URL)
                resp.read()
        except OSError as exc:
            errors.append(f"alert webhook failed: {exc}")
    for err in errors:
        log.error(err)
    return errors
