"""Building the ``google-cloud-storage`` client from a target's options.

Options are the dumped ``GCSSettings`` (``endpoint``, ``project``, ``auth``,
``bucket_prefix``) plus ``local: True`` for the local stack. ``auth: anonymous`` (and any
local stack) uses :class:`AnonymousCredentials`; ``adc`` uses Application Default
Credentials. Credentials are never logged or put in an error message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import google.auth
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage
from requests.adapters import HTTPAdapter

from ..base.http_env import ca_bundle, environment_needed
from ..base.pools import pool_size

#: threads that may share one client: the apply fan-out plus capture/digest downloads
from ..base.object_store import WORKERS  # noqa: E402  (threads sharing one client)
#: connections kept per host; the library's default (10) is below what WORKERS threads
#: plus a listing in flight can use, and a too-small pool makes requests wait or reconnect
POOL_SIZE = 2 * WORKERS


def uses_anonymous(options: Mapping[str, Any]) -> bool:
    """True for the emulator (local stack) or an explicit ``auth: anonymous``."""
    return bool(options.get("local")) or options.get("auth") == "anonymous"


def make_client(options: Mapping[str, Any]) -> storage.Client:
    """A storage client for ``options`` with a connection pool sized for :data:`WORKERS`.

    Raises google-auth's ``DefaultCredentialsError`` when ADC is requested but absent;
    the adapter translates it into a :class:`CredentialsError` with the fix.
    """
    project = options.get("project") or None
    credentials: Credentials
    if uses_anonymous(options):
        credentials = AnonymousCredentials()
        project = project or "mcrepl-local"
    else:
        credentials, default_project = google.auth.default(scopes=list(storage.Client.SCOPE))
        project = project or default_project
    session = AuthorizedSession(credentials)
    # no per-request look for proxies or ~/.netrc unless the process has one (see ..base.http_env)
    session.trust_env = environment_needed()
    bundle = ca_bundle()
    if not session.trust_env and bundle is not None:
        session.verify = bundle
    pool = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size(options, POOL_SIZE))
    session.mount("https://", pool)
    session.mount("http://", pool)
    endpoint = options.get("endpoint")
    client_options = {"api_endpoint": str(endpoint).rstrip("/")} if endpoint else None
    return storage.Client(project=project, credentials=credentials, _http=session,
                          client_options=client_options)
