"""Structured logs that never print a credential or a configured sensitive field.

Redaction happens twice, on purpose:

* a :class:`RedactingFilter` on every handler rewrites the record's message, its
  ``args`` and its ``extra`` fields *before* formatting, by value pattern (AWS keys,
  Cosmos keys, ``AccountKey=``, SAS ``sig=``, bearer tokens, JWTs, private keys) and by
  field name (``password``, ``ssn`` or whatever the config lists as sensitive);
* the formatter scrubs the final text again, which also covers exception tracebacks
  and objects whose ``str()`` embeds a secret.

Both use the one redactor of :mod:`.redaction`. Lines logged inside an OpenTelemetry span
carry ``trace_id`` and ``span_id`` (:class:`TraceContextFilter`).

:func:`redact` is the same logic for any JSON-like value; the audit trail runs every
payload through it.
"""

from __future__ import annotations

import json as _json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from .redaction import (DEFAULT_SENSITIVE_FIELDS, MASK, _norm, redact, scrub_text, sensitive_fields,
                        set_sensitive_fields)

__all__ = ["DEFAULT_SENSITIVE_FIELDS", "MASK", "ConsoleFormatter", "JsonFormatter", "RedactingFilter",
           "RedactingFormatter", "TraceContextFilter", "configure_logging", "redact", "scrub_text", "sensitive_fields",
           "set_sensitive_fields"]


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
            record.__dict__[name] = MASK if _norm(name) in sensitive_fields() else redact(value)
        return True


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex, as OTLP backends show them) to records logged
    inside a span, so a log line leads to its trace and back. Lines outside a span get none."""

    def filter(self, record: logging.LogRecord) -> bool:
        from opentelemetry import trace
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
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
    handler.addFilter(TraceContextFilter())
    handler.addFilter(RedactingFilter())
    setattr(handler, "_mcrepl", True)  # marks the handler this function installed (see above)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    root.setLevel(numeric)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else logging.WARNING)

