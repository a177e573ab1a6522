"""Structured logs that never print a credential or a configured sensitive field.

Redaction happens twice, on purpose:

* a :class:`RedactingFilter` on every handler rewrites the record's message, its
  ``args`` and its ``extra`` fields *before* formatting, by value pattern (AWS keys,
  Cosmos keys, ``AccountKey=``, SAS ``sig=``, bearer tokens, JWTs, private keys) and by
  field name (``password``, ``ssn`` or whatever the config lists as sensitive);
* the formatter scrubs the final text again, which also covers exception tracebacks
  and objects whose ``str()`` embeds a secret.

:func:`redact` is the same logic for any JSON-like value; the audit trail runs every
payload through it.
"""

from __future__ import annotations

import json as _json
import logging
import re
import sys
import threading
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

MASK = "***"
"""What a redacted value is replaced with."""

DEFAULT_SENSITIVE_FIELDS: frozenset[str] = frozenset({
    "password", "passwd", "secret", "token", "access_token", "refresh_token", "id_token",
    "api_key", "apikey", "authorization", "aws_secret_access_key", "secret_access_key",
    "aws_session_token", "session_token", "account_key", "accountkey", "master_key",
    "masterkey", "private_key", "client_secret", "credential", "credentials",
    "connection_string", "sas_token", "key_material", "audit_key",
})
"""Field names redacted wherever they appear, besides the ones the config adds."""

_SECRETISH_B64 = r"[A-Za-z0-9+/]"


def _unless_hex(match: re.Match[str]) -> str:
    """Keep hex digests (content hashes, audit hashes); mask random base64 secrets."""
    text = match.group(0)
    if re.fullmatch(r"[0-9a-fA-F]+", text) or not (re.search(r"[a-z]", text) and re.search(r"[A-Z]", text)):
        return text
    return MASK


# (pattern, replacement): order matters, the most specific come first.
_VALUE_PATTERNS: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S),
     "[REDACTED PRIVATE KEY]"),
    (re.compile(r"(?i)\b(AccountKey|SharedAccessKey|AccessKey)=[^;\s\"']+"), rf"\1={MASK}"),
    (re.compile(r"(?i)([?&]sig=)[^&\s\"']+"), rf"\1{MASK}"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*"), rf"\1 {MASK}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"), MASK),       # JWT
    (re.compile(r"\b(AKIA|ASIA|AIDA|AROA)[A-Z0-9]{16}\b"), MASK),                          # AWS key id
    (re.compile(r"(?i)(type=master&ver=[0-9.]+&sig=)[^&\s\"']+"), rf"\1{MASK}"),          # Cosmos auth
    (re.compile(rf"(?<![A-Za-z0-9+/=]){_SECRETISH_B64}{{64,}}={{0,2}}(?![A-Za-z0-9+/=])"),
     _unless_hex),                                                                       # Cosmos key
    (re.compile(rf"(?<![A-Za-z0-9+/=]){_SECRETISH_B64}{{40}}(?![A-Za-z0-9+/=])"),
     _unless_hex),                                                                       # AWS secret
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
    pass unchanged; bytes are masked (a log or audit entry never needs raw bytes); any
    other object is replaced by its scrubbed ``str()``.
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


_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, args and ``extra`` fields before any formatting."""

    def filter(self, record: logging.LogRecord) -> bool:
        # merge args into the message first (scrubbing the template alone could eat a
        # ``%s``), redacting the args structurally so sensitive dict keys are masked too
        if record.args:
            args = redact(record.args) if isinstance(record.args, Mapping) \
                else tuple(redact(a) for a in record.args)
            try:
                text = str(record.msg) % args
            except (TypeError, ValueError, KeyError):
                text = f"{record.msg} {args}"
        else:
            text = str(record.msg) if isinstance(record.msg, str) else str(redact(record.msg))
        record.msg, record.args = scrub_text(text), ()
        for name in [n for n in record.__dict__ if n not in _STANDARD_ATTRS]:
            value = record.__dict__[name]
            record.__dict__[name] = MASK if _norm(name) in _configured_fields else redact(value)
        return True


class RedactingFormatter(logging.Formatter):
    """Scrubs the fully formatted text again (tracebacks, odd ``str()`` implementations)."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub_text(super().format(record))


class ConsoleFormatter(RedactingFormatter):
    """The message followed by the record's ``extra`` fields as ``name=value``."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{name}={_json.dumps(value, default=str, ensure_ascii=False)}"
                          for name, value in record.__dict__.items() if name not in _STANDARD_ATTRS)
        text = super().format(record)
        return scrub_text(f"{text}  {extras}") if extras else text


class JsonFormatter(RedactingFormatter):
    """One JSON object per line: ts (UTC), level, logger, msg, extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        for name, value in record.__dict__.items():
            if name not in _STANDARD_ATTRS:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return scrub_text(_json.dumps(entry, default=str, ensure_ascii=False))


_NOISY_LOGGERS = ("azure", "urllib3", "botocore", "boto3", "google", "s3transfer", "apscheduler")


def configure_logging(level: str = "INFO", sensitive_fields: Iterable[str] = (), json: bool = False) -> None:
    """Route all logging through one redacting handler on stderr.

    ``json=True`` writes JSON lines (for log shippers); otherwise a rich console handler.
    Calling it again replaces the handler it installed before (never stacks handlers).
    SDK loggers are held at WARNING unless ``level`` is DEBUG, because some of them log
    request headers.
    """
    set_sensitive_fields(sensitive_fields)
    root = logging.getLogger()
    for installed in [h for h in root.handlers if getattr(h, "_mcrepl", False)]:
        root.removeHandler(installed)
    handler: logging.Handler
    if json:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        from rich.console import Console
        from rich.logging import RichHandler
        handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False,
                              markup=False)
        handler.setFormatter(ConsoleFormatter("%(message)s"))
    handler.addFilter(RedactingFilter())
    setattr(handler, "_mcrepl", True)  # marks the handler this function installed (see above)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    root.setLevel(numeric)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else logging.WARNING)


set_sensitive_fields(())
