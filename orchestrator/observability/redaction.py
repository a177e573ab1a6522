"""The one redactor: every byte mcrepl writes (tables, JSON, logs, state, audit, reports,
exception text) passes through :func:`scrub_text` or :func:`redact` first.

It masks by *value shape* and by *field name*:

* value shapes: PEM private keys; connection-string credentials (``AccountKey=``,
  ``SharedAccessKey=``, ``SharedAccessSignature=``, ``Password=`` …); the userinfo of any
  URL (``https://user:secret@host`` → ``https://***@host``); SAS ``sig=`` parameters;
  ``Bearer``/``Basic`` credentials; JWTs; AWS access key ids; and long random base64 runs
  (AWS secret keys of any length, Cosmos DB account keys) — but never hex digests
  (content hashes, audit hashes, trace ids), which are what operators need to read;
* field names, wherever they appear (mapping keys at any depth, ``name=value`` and
  ``"name": "value"`` text): a built-in list plus the ``sensitive_fields`` of the config.

Why by shape rather than by knowing the secrets: a secret can reach output from places
mcrepl never sees (an SDK's exception text, a user's typo in the config), so the
redactor must recognise credentials it was never told about. The canary test in
``tests/test_secret_canary.py`` proves it over every command.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Iterable, Mapping

MASK = "***"
"""What a redacted value is replaced with."""

DEFAULT_SENSITIVE_FIELDS: frozenset[str] = frozenset({
    "password", "passwd", "pwd", "secret", "token", "access_token", "refresh_token", "id_token",
    "api_key", "apikey", "authorization", "aws_secret_access_key", "secret_access_key",
    "aws_session_token", "session_token", "account_key", "accountkey", "master_key",
    "masterkey", "private_key", "client_secret", "credential", "credentials",
    "connection_string", "sas_token", "key_material", "audit_key",
})
"""Field names redacted wherever they appear, besides the ones the config adds."""

_B64 = r"[A-Za-z0-9+/]"


_WORDISH = re.compile(r"[A-Za-z][a-z]*(?:[A-Z][a-z]+)*[0-9]*|[a-z0-9]+")


def _unless_hex(match: re.Match[str]) -> str:
    """Keep hex digests, plain words and paths of words (``keyRings/finance/cryptoKeys/k``);
    mask random-looking base64: mixed case with a digit or ``+`` (random base64 of 30+
    characters lacks both with odds below one in a thousand)."""
    text = match.group(0)
    if re.fullmatch(r"[0-9a-fA-F]+", text):
        return text
    if not (re.search(r"[a-z]", text) and re.search(r"[A-Z]", text) and re.search(r"[0-9+]", text)):
        return text
    if "/" in text and all(_WORDISH.fullmatch(part) for part in text.split("/") if part):
        return text
    return MASK


#: connection-string and query-string keys whose value is a credential
_CREDENTIAL_KEYS = ("AccountKey", "SharedAccessKey", "SharedAccessSignature", "AccessKey", "SecretKey",
                    "SecretAccessKey", "ClientSecret", "Password", "Pwd", "sig")

# (pattern, replacement): order matters, the most specific come first.
_VALUE_PATTERNS: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S),
     "[REDACTED PRIVATE KEY]"),
    # scheme://userinfo@host: the whole userinfo goes (a user name may be an access key id)
    # (a pasted secret may hold a raw "/", so the password part may too)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)(?:[^/\s@:\"'<>]*:[^\s@\"'<>]+|[^/\s@:\"'<>]+)@"),
     rf"\1{MASK}@"),
    (re.compile(rf"(?i)(?<![A-Za-z0-9_])({'|'.join(_CREDENTIAL_KEYS)})=[^;&\s\"'<>]+"), rf"\1={MASK}"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*"), rf"\1 {MASK}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"), MASK),       # JWT
    (re.compile(r"\b(AKIA|ASIA|AIDA|AROA|ABIA|ACCA)[A-Z0-9]{12,}\b"), MASK),               # AWS key id
    # long random base64: AWS secret keys (any length from 30), Cosmos keys (88), HMAC keys
    (re.compile(rf"(?<![A-Za-z0-9+/=]){_B64}{{30,}}={{0,2}}(?![A-Za-z0-9+/=])"), _unless_hex),
]

_lock = threading.Lock()
_configured_fields: frozenset[str] = DEFAULT_SENSITIVE_FIELDS
_field_text_pattern: re.Pattern[str] | None = None


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _fields_pattern(fields: frozenset[str]) -> re.Pattern[str]:
    names = "|".join(sorted((re.escape(f) for f in fields), key=len, reverse=True))
    # name=value, name: value, "name": "value", 'name': 'value' (reprs of dicts, JSON, query strings)
    return re.compile(rf"(?i)([\"']?\b(?:{names})\b[\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&}})\]]+)")


def set_sensitive_fields(fields: Iterable[str]) -> None:
    """Add ``fields`` (case-insensitive, ``-`` = ``_``) to the names redacted everywhere."""
    global _configured_fields, _field_text_pattern
    with _lock:
        _configured_fields = DEFAULT_SENSITIVE_FIELDS | {_norm(f) for f in fields if f.strip()}
        _field_text_pattern = _fields_pattern(_configured_fields)


def sensitive_fields() -> frozenset[str]:
    """The field names currently redacted (defaults plus configured ones)."""
    return _configured_fields


def _quoted_mask(match: re.Match[str]) -> str:
    value = match.group(2)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group(1)}{quote}{MASK}{quote}"


def scrub_text(text: str, extra_fields: frozenset[str] = frozenset()) -> str:
    """``text`` with every secret-looking value and ``name=value`` of a sensitive field masked."""
    for pattern, replacement in _VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    pattern = _field_text_pattern or _fields_pattern(_configured_fields)
    text = pattern.sub(_quoted_mask, text)
    if extra_fields - _configured_fields:
        text = _fields_pattern(extra_fields).sub(_quoted_mask, text)
    return text


def redact(obj: Any, sensitive_fields: Iterable[str] = ()) -> Any:
    """A copy of ``obj`` with secrets and sensitive fields masked.

    Mappings keep their keys but a sensitive key's value becomes ``"***"``; strings are
    scrubbed by pattern; lists and tuples are walked; numbers, booleans and ``None``
    pass unchanged; bytes are masked (a log or audit entry never needs raw bytes); a
    pydantic ``SecretStr`` stays masked; any other object is replaced by its scrubbed ``str()``.
    """
    extra = frozenset(_norm(f) for f in sensitive_fields)
    names = _configured_fields | extra
    return _redact(obj, names, extra, 0)


def _redact(obj: Any, names: frozenset[str], extra: frozenset[str], depth: int) -> Any:
    if depth > 50:
        return MASK
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    if isinstance(obj, str):
        return scrub_text(obj, extra)
    if isinstance(obj, Mapping):
        return {k: (MASK if isinstance(k, str) and _norm(k) in names
                    else _redact(v, names, extra, depth + 1)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [_redact(v, names, extra, depth + 1) for v in obj]
        return tuple(items) if isinstance(obj, tuple) else items
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return f"<{len(obj)} bytes>"
    return scrub_text(str(obj), extra)


set_sensitive_fields(())
