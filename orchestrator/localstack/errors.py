"""The one error type of the local stack."""

from __future__ import annotations

from dataclasses import dataclass

from mcrepl.adapters.base.errors import McreplError


@dataclass
class LocalStackError(McreplError):
    """An emulator could not be found, started or reached.

    ``log_tail`` holds the last lines the service printed, so a failed start explains
    itself without the user hunting for the log file.
    """

    message: str
    fix: str | None = None
    log_tail: str | None = None

    def __str__(self) -> str:
        text = f"{self.message} (fix: {self.fix})" if self.fix else self.message
        if self.log_tail:
            text += "\n--- last lines of the service log ---\n" + self.log_tail
        return text
