"""The common replication interface, the canonical record and the shared error types.

Importing this package loads no cloud SDK.
"""

from .errors import (AdapterError, ConfigError, CredentialsError, McreplError, NotFoundError,
                     PolicyError, RecordError, ThrottledError, UnavailableError)
from .interface import (ApplyOutcome, ApplyResult, Capabilities, Change, ChangePage, Cursor,
                        DatasetKind, Digest, ReplicaAdapter, ReplicaTarget, apply_one,
                        conflict_between, decide, rejected)
from .record import (KeyAttribute, KeySchema, Record, RecordKey, ReplicationMeta, Version,
                     blob, document, meta_if_valid, tombstone_of, vector_dominates,
                     vectors_concurrent)
from .retry import RetryPolicy, call_with_retry
from .conditional import PreconditionFailed, StoredState, apply_each, read_decide_write

__all__ = [
    "AdapterError", "ApplyOutcome", "ApplyResult", "Capabilities", "Change", "ChangePage",
    "ConfigError", "CredentialsError", "Cursor", "DatasetKind", "Digest", "KeyAttribute",
    "KeySchema", "McreplError", "NotFoundError", "PolicyError", "Record", "RecordError",
    "RecordKey", "ReplicaAdapter", "ReplicaTarget", "ReplicationMeta", "RetryPolicy",
    "ThrottledError", "UnavailableError", "Version", "apply_one", "blob", "call_with_retry",
    "conflict_between", "decide", "document", "meta_if_valid", "rejected", "tombstone_of",
    "vector_dominates", "vectors_concurrent", "PreconditionFailed", "StoredState", "apply_each",
    "read_decide_write",
]
