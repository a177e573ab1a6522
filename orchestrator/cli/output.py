"""How every command writes: redacted, escaped, and whole when piped.

* :class:`RedactingStream` wraps ``sys.stdout`` and ``sys.stderr`` for the life of the
  process (installed by :func:`install_redaction` from the ``mcrepl`` entry point), so
  whatever reaches them — rich tables, ``typer.echo``, JSON, a traceback — passes the one
  redactor (:mod:`mcrepl.orchestrator.observability.redaction`) first. A secret in an
  SDK's exception text is masked even though no code path knew it was there.
* :func:`make_console` gives a rich console that, when its stream is not a terminal (CI
  logs, ``| less``, ``| grep``), renders at full width: rich would otherwise squeeze every
  table to 80 columns and cut cells short.
* :func:`cell` and :func:`printable` escape control characters in data (``bad\\rcr`` is
  printed as ``bad\\\\rcr``, not as a line that overwrites itself) and disable rich markup
  in it, so a key or an error message is shown exactly as it is.
"""

from __future__ import annotations

import io
import sys
import unicodedata
from typing import Any, Iterable, TextIO

from rich.console import Console, ConsoleDimensions
from rich.table import Table
from rich.text import Text

from mcrepl.orchestrator.observability.redaction import redact, scrub_text

#: width used when output is not a terminal: wide enough that no table is ever folded
PIPE_WIDTH = 100_000
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0", "\x1b": "\\x1b"}


class RedactingStream(io.TextIOBase):
    """A text stream that scrubs every write before passing it to ``inner``.

    It keeps ``inner``'s ``isatty()`` and ``encoding`` so rich and click treat it as the
    terminal (or pipe) it wraps.
    """

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner

    def write(self, text: str) -> int:  # type: ignore[override]
        self.inner.write(scrub_text(text))
        return len(text)

    def flush(self) -> None:
        self.inner.flush()

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.inner, "errors", None)

    def writable(self) -> bool:
        return True


def install_redaction() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` in :class:`RedactingStream` (once)."""
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)


class _Console(Console):
    """A console whose width follows its stream: the terminal's, or unlimited when piped."""

    @property
    def size(self) -> ConsoleDimensions:
        measured = Console.size.fget(self)  # type: ignore[attr-defined]
        if not self.is_terminal:          # COLUMNS describes a terminal, not a pipe
            return ConsoleDimensions(PIPE_WIDTH, measured.height)
        return measured

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


def make_console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr) that never truncates when piped.

    The stream is looked up at each write (``sys.stdout`` may be wrapped or swapped by a
    test runner after the console was made).
    """
    return _Console(stderr=stderr, soft_wrap=False)


def printable(value: Any) -> str:
    """``value`` as text with control and format characters escaped, and redacted."""
    text = scrub_text(value if isinstance(value, str) else str(value))
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def cell(value: Any, style: str | None = None) -> Text:
    """A table cell: :func:`printable` text, never read as rich markup."""
    return Text("-" if value is None else printable(value), style=style or "")


def make_table(columns: Iterable[str], title: str | None = None, **kwargs: Any) -> Table:
    """A table whose cells fold rather than being cut (``…``) when a terminal is narrow."""
    table = Table(title=title, title_justify="left", **kwargs)
    for name in columns:
        table.add_column(name, overflow="fold")
    return table


def json_ready(value: Any) -> Any:
    """``value`` redacted for ``--format json`` (structure kept, secrets masked)."""
    return redact(value)
