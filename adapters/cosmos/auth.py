"""Building the one CosmosClient an adapter uses, from the target's options.

Options (a dumped ``CosmosSettings`` plus ``local``): ``endpoint``; ``auth`` = ``"key"``
(the account key read from the environment variable named by ``key_env``) or ``"aad"``
(``azure.identity.DefaultAzureCredential``); ``local: True`` for the local stack.

Guarantees: the key is read from the environment only, is never logged and never
appears in an error (errors name the variable, not its value); TLS verification is
switched off only for ``local`` endpoints, whose emulator uses a self-signed certificate.
"""

from __future__ import annotations

import binascii
import os
import warnings
from collections.abc import Mapping
from typing import Any

from azure.cosmos import CosmosClient
from azure.cosmos.documents import ConnectionPolicy, RetryOptions
from pydantic import SecretStr

from ..base.errors import ConfigError, CredentialsError
from ..base.http_env import ca_bundle, environment_needed
from ..base.pools import UnverifiedTLSAdapter, pool_size
from ..base.retry import policy_for, request_timeouts

#: The Cosmos DB emulator's fixed, publicly documented account key (not a secret): used
#: for ``local`` endpoints when the key variable is unset.
EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="


def account_key(options: Mapping[str, Any]) -> SecretStr:
    """The account key from ``options['key_env']``; the emulator key for unset local ones.

    A :class:`SecretStr` from the moment it is read: its ``str()`` and ``repr()`` are
    masked, so a log line or an error that includes it by mistake shows ``**********``.
    Only :func:`_credential` unwraps it, at the SDK call.
    """
    env = str(options.get("key_env") or "MCREPL_COSMOS_KEY")
    key = os.environ.get(env)
    if key:
        return SecretStr(key)
    if options.get("local"):
        return SecretStr(EMULATOR_KEY)
    raise CredentialsError(f"Cosmos DB key auth needs the account key in the environment variable "
                           f"{env}, which is not set: export {env}=<primary key>, or use auth: aad",
                           provider="cosmos", operation="connect")


def _credential(options: Mapping[str, Any]) -> Any:
    auth = options.get("auth", "key")
    if auth == "key":
        return account_key(options).get_secret_value()
    if auth == "aad":
        from azure.identity import DefaultAzureCredential
        return DefaultAzureCredential()
    raise ConfigError(f"unknown Cosmos DB auth mode {auth!r}", path="providers.cosmos.auth",
                      fix="use 'key' or 'aad'")


def make_client(options: Mapping[str, Any]) -> CosmosClient:
    """A CosmosClient for ``options`` (network errors surface as azure-core exceptions)."""
    endpoint = options.get("endpoint")
    if not endpoint:
        raise ConfigError("no Cosmos DB endpoint is configured", path="providers.cosmos.endpoint",
                          fix="set it to the account URL (https://<account>.documents.azure.com:443/) "
                              "or 'local' for the local stack")
    connect, read = request_timeouts(policy_for(options))
    # one retry layer (call_with_retry, honouring retry-after): the SDK's own throttle and
    # connection retries are off, and no request outlives the retry deadline
    policy = ConnectionPolicy()
    policy.RetryOptions = RetryOptions(max_retry_attempt_count=0)
    kwargs: dict[str, Any] = {"connection_policy": policy, "connection_timeout": connect, "read_timeout": read,
                              "retry_connect": 0, "retry_read": 0, "retry_status": 0}
    if options.get("local"):
        kwargs["connection_verify"] = False
        # An emulator advertises its own address as the account's regional endpoint; with
        # discovery on, the SDK switches to it after the first call and so goes around
        # anything in between (the drills' fault proxy). One endpoint: nothing to discover.
        kwargs["enable_endpoint_discovery"] = False
        warnings.filterwarnings("ignore", message=r"Unverified HTTPS request is being made to host "
                                r"'(127\.0\.0\.1|localhost|::1)'")
    kwargs["transport"] = _transport(options, kwargs)
    try:
        return CosmosClient(str(endpoint), credential=_credential(options), **kwargs)
    except binascii.Error:
        env = options.get("key_env", "MCREPL_COSMOS_KEY")
        raise CredentialsError(f"the Cosmos DB key in {env} is not a valid base64 account key: "
                               "copy the primary key again", provider="cosmos",
                               operation="connect") from None


def _transport(options: Mapping[str, Any], kwargs: Mapping[str, Any]) -> Any:
    """The SDK's requests transport on a session with a pool sized for the engine's in-flight
    requests (see :mod:`..base.pools`) and without per-request environment lookups unless the
    process has a proxy, a netrc file or a CA bundle to find (:mod:`..base.http_env`)."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    session = requests.Session()
    session.trust_env = environment_needed()
    unverified = kwargs.get("connection_verify") is False      # the emulator's self-signed certificate
    pool = UnverifiedTLSAdapter if unverified else requests.adapters.HTTPAdapter
    adapter = pool(pool_connections=2, pool_maxsize=pool_size(options, 10), max_retries=0)
    for prefix in ("http://", "https://"):
        session.mount(prefix, adapter)
    settings = {k: kwargs[k] for k in ("connection_timeout", "read_timeout", "connection_verify") if k in kwargs}
    if not session.trust_env and "connection_verify" not in settings and ca_bundle():
        settings["connection_verify"] = ca_bundle()     # what requests would have read per request
    return RequestsTransport(session=session, session_owner=True, use_env_settings=False, **settings)


def close_client(client: CosmosClient, wait_s: float = 5.0) -> None:
    """Close ``client`` once the SDK's background endpoint health check has finished.

    azure-cosmos 4.17 probes the account's endpoints from a daemon thread started with
    the client; closing the transport under it makes that thread log a "Health check
    task failed" traceback (short-lived adapters, e.g. one per resumed capture, hit
    this). The thread is internal, so it is looked up defensively.
    """
    manager = getattr(client.client_connection, "_global_endpoint_manager", None)
    refresh = getattr(manager, "_refresh_thread", None)
    if refresh is not None and refresh.is_alive():
        refresh.join(wait_s)
    client.close()
