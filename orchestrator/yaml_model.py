"""Read a YAML file into a pydantic model, with errors that name the file, the path and the fix.

``mcrepl.yaml`` and drill files are both loaded this way, so a user sees one error style:
``file:path.in.file: message (fix: …)``, every problem at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from mcrepl.adapters.base import ConfigError
from mcrepl.adapters.base.settings import LocatedValueError

__all__ = ["LocatedValueError", "read_mapping", "validate"]

M = TypeVar("M", bound=BaseModel)


def read_mapping(path: Path, *, example: str, top_keys: str) -> dict[str, Any]:
    """The YAML mapping in ``path``; ``example`` and ``top_keys`` phrase the fixes."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path), fix=f"pass the path of a file like {example}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", file=str(path), path=where,
                          fix="fix the YAML syntax at that line") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"the file must hold a mapping ({top_keys})", file=str(path), fix=f"start from {example}")
    return raw


def validate(model: type[M], raw: Mapping[str, Any], path: Path, *, docs: str,
             fixes: Mapping[str, str] | None = None) -> M:
    """``model`` validated from ``raw``; every problem is listed with its path and fix.

    ``fixes`` adds fixes for pydantic error types particular to the model (e.g. tagged unions).
    """
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = [_problem(err, path, docs, fixes or {}) for err in exc.errors()]
    if len(problems) == 1:
        raise problems[0]
    listing = "\n  ".join(str(p) for p in problems)
    raise ConfigError(f"{len(problems)} problems in {path}:\n  {listing}")


def _problem(err: Any, path: Path, docs: str, fixes: Mapping[str, str]) -> ConfigError:
    located = (err.get("ctx") or {}).get("error")
    where = _location(err["loc"])
    if isinstance(located, LocatedValueError):
        if located.at:
            where = f"{where}{'' if located.at.startswith('[') or not where else '.'}{located.at}"
        return ConfigError(str(located), file=str(path), path=where or None, fix=located.fix)
    return ConfigError(str(err["msg"]).removeprefix("Value error, "), file=str(path), path=where or None,
                       fix=_fix(err, docs, fixes))


def _location(loc: tuple) -> str:
    """``('datasets', 'people', 'replicas', 1)`` → ``datasets.people.replicas[1]``."""
    out = ""
    for part in loc:
        if str(part).startswith("function-"):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fix(err: Mapping[str, Any], docs: str, extra: Mapping[str, str]) -> str | None:
    kind = str(err.get("type", ""))
    if kind == "value_error":
        return None                     # our own validators already say what to do
    if kind in extra:
        return extra[kind]
    if kind == "extra_forbidden":
        return f"remove it, or check its spelling against {docs}"
    if kind == "missing":
        return "add this field"
    if kind == "too_short":
        return "add at least one entry"
    if kind.startswith("literal_error") or kind == "enum":
        return f"use one of {err.get('ctx', {}).get('expected', 'the allowed values')}"
    return f"see {docs}"
