"""What the ``requests`` sessions of the SDKs take from the process environment, decided once.

``requests`` looks for proxy variables, a ``~/.netrc`` and a CA bundle variable on every
request when a session's ``trust_env`` is on (a ``stat()`` of the netrc file and more per
call: PERF-NOTES.md measured about 6 % of a pass). mcrepl's credentials never come from
there (google-auth and the Cosmos DB key sign each request), so the GCS and Cosmos DB
sessions turn it off unless the process has a proxy or a netrc file configured — then
they keep it on and behave exactly as ``requests`` does by default (a proxy needs its
``no_proxy`` exceptions, which ``requests`` applies only with ``trust_env``). A CA bundle
variable (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) needs no per-request lookup: its path
is read once and given to the session (:func:`ca_bundle`).
"""

from __future__ import annotations

import os
import urllib.request

#: the variables ``requests`` reads for a CA bundle, in its order
_CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def environment_needed() -> bool:
    """True when a proxy or a netrc file is configured for this process (``trust_env`` must stay on)."""
    if any(scheme != "no" for scheme in urllib.request.getproxies()):
        return True
    netrc = os.environ.get("NETRC")
    candidates = [netrc] if netrc else [os.path.expanduser(f"~/{name}") for name in (".netrc", "_netrc")]
    return any(os.path.exists(path) for path in candidates)


def ca_bundle() -> str | None:
    """The CA bundle the environment names (what ``requests`` would verify with), or ``None``."""
    return next((os.environ[name] for name in _CA_VARIABLES if os.environ.get(name)), None)


__all__ = ["ca_bundle", "environment_needed"]
