"""boto3 sessions for every AWS adapter, so none of them reads a user's real credentials by accident.

A local endpoint (the local stack, or any loopback address) gets dummy keys in a botocore
session that reads no profile, config or credentials file, unless the config names a
``profile`` (an emulator that enforces IAM, e.g. moto with ``INITIAL_NO_AUTH_ACTION_COUNT``);
otherwise the standard chain resolves them (the configured profile if any). botocore's
own retries are off everywhere: :func:`mcrepl.adapters.base.retry.call_with_retry` is the
one retry policy. Nothing here logs or stores a secret.
"""

from __future__ import annotations

import os
from typing import Any, Mapping
from urllib.parse import urlparse

import boto3
import botocore.session
from botocore.config import Config

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
_DUMMY = "testing"


def is_local(options: Mapping[str, Any]) -> bool:
    """True when the endpoint is an emulator on this machine (dummy credentials are used)."""
    endpoint = options.get("endpoint")
    if options.get("local"):
        return True
    return bool(endpoint) and (urlparse(str(endpoint)).hostname or "") in _LOOPBACK


def _isolated_botocore_session() -> botocore.session.Session:
    """A botocore session that reads no AWS profile, config or credentials file, nor AWS_PROFILE.

    Explicit dummy keys alone are not enough: botocore still resolves ``AWS_PROFILE``
    and fails when it names a profile this machine doesn't have.
    """
    return botocore.session.Session(session_vars={
        "profile": (None, None, None, None),
        "config_file": (None, None, os.devnull, None),
        "credentials_file": (None, None, os.devnull, None),
    })


def make_session(options: Mapping[str, Any], region: str) -> boto3.session.Session:
    """A boto3 session for ``options``: dummy keys on a local endpoint (unless a ``profile`` is
    named), else the standard credential chain with the configured profile."""
    if is_local(options) and not options.get("profile"):
        return boto3.session.Session(aws_access_key_id=_DUMMY, aws_secret_access_key=_DUMMY, region_name=region,
                                     botocore_session=_isolated_botocore_session())
    return boto3.session.Session(profile_name=options.get("profile") or None, region_name=region)


def plain_config() -> Config:
    """A botocore config with botocore's own retries off (``call_with_retry`` is the one policy)."""
    return Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30)


__all__ = ["is_local", "make_session", "plain_config"]
