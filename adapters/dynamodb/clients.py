"""boto3 clients for one target, and the guarded call every SDK request goes through.

Credentials: a local endpoint (the local stack, or any loopback address) gets dummy
keys, so tests and demos never read the user's real AWS credentials, unless the config
names a ``profile`` (an emulator that enforces IAM, e.g. moto with
``INITIAL_NO_AUTH_ACTION_COUNT``); otherwise a boto3 ``Session`` resolves them from the
standard chain (the configured profile if any).
Nothing here logs or stores a secret. botocore's own retries are switched off so that
:func:`mcrepl.adapters.base.retry.call_with_retry` is the one retry policy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.config import Config

from ..aws.session import make_session
from ..base.interface import ReplicaTarget
from ..base.retry import DEFAULT_POLICY, RetryPolicy, call_translated, request_timeouts
from .errors import is_sdk_error, translate
from .stream_memo import StreamMemo

T = TypeVar("T")



class DynamoDBClients:
    """Thread-safe boto3 clients (DynamoDB and DynamoDB Streams) for one target, made lazily.

    boto3 *clients* are thread-safe; sessions are not, so each instance builds its
    session once under a lock.
    """

    def __init__(self, target: ReplicaTarget, policy: RetryPolicy = DEFAULT_POLICY,
                 max_connections: int = 16) -> None:
        self.target = target
        self.policy = policy
        self._max_connections = max_connections
        self._lock = threading.Lock()
        self._table: Any = None
        self._streams: Any = None
        self.stream_memo = StreamMemo()     # shard lists and iterators kept between capture polls

    def _build(self) -> None:
        opts = dict(self.target.options)
        connect, read = request_timeouts(self.policy)
        config = Config(retries={"total_max_attempts": 1}, max_pool_connections=self._max_connections,
                        connect_timeout=connect, read_timeout=read)
        session = make_session(opts, self.target.region)
        endpoint = opts.get("endpoint") or None
        self._table = session.client("dynamodb", endpoint_url=endpoint, config=config)
        self._streams = session.client("dynamodbstreams", endpoint_url=endpoint, config=config)

    @property
    def table(self) -> Any:
        """The ``dynamodb`` client."""
        if self._table is None:
            with self._lock:
                if self._table is None:
                    self.guard("connect", self._build)
        return self._table

    @property
    def streams(self) -> Any:
        """The ``dynamodbstreams`` client."""
        if self._streams is None:
            _ = self.table
        return self._streams

    def guard(self, operation: str, fn: Callable[[], T], *, key: str | None = None) -> T:
        """Run one SDK call under the retry policy, translating botocore errors into mcrepl's."""
        return call_translated(fn, self.policy, is_sdk_error, lambda exc: translate(
            exc, replica=self.target.replica, dataset=self.target.dataset, operation=operation, key=key,
            resource=self.target.resource))

    def close(self) -> None:
        """Close the clients' connection pools."""
        with self._lock:
            for client in (self._table, self._streams):
                if client is not None:
                    client.close()
            self._table = self._streams = None
