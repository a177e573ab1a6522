"""Every write mcrepl makes to a location goes through one policy enforcement point.

:class:`mcrepl.orchestrator.sync.writer.LocationWriter` routes each record through the
policy engine (residency, field encryption) before the adapter's ``apply_batch``. This
test walks the source of every shipped package and fails when any other module calls
``apply_batch`` — a new write path (a repair, a reconciliation, a backfill) that skipped
the router would leak what residency withholds, or send plaintext where ciphertext belongs.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("adapters", "policies", "orchestrator", "client", "failover")

#: module → why it may call ``apply_batch`` itself
ALLOWED: dict[str, str] = {
    "orchestrator/sync/writer.py": "the enforcement point itself",
    "failover/guard.py": "an adapter wrapper (drill faults) delegating to the adapter it wraps",
    "failover/router.py": "the drill's application workload, writing to the primary as an application "
                          "does (its writes are what mcrepl then captures and routes)",
}


def apply_calls(path: Path) -> list[int]:
    """Lines of ``<anything>.apply_batch(...)`` calls in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "apply_batch"]


def callers() -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("adapters/"):
                continue                 # adapters implement apply_batch (and wrap each other), never route
            lines = apply_calls(path)
            if lines:
                found[rel] = lines
    return found


def test_only_the_location_writer_calls_an_adapters_apply_batch() -> None:
    outside = {module: lines for module, lines in callers().items() if module not in ALLOWED}
    assert not outside, ("write paths that bypass the policy enforcement point (LocationWriter in "
                         f"orchestrator/sync/writer.py): {outside}")


def test_the_walk_sees_the_enforcement_point_and_every_allowed_caller() -> None:
    """The walk is not blind: the writer's own call is found, and each allowance still names a caller
    (a stale entry would let a future write path in under an old excuse)."""
    assert set(callers()) >= set(ALLOWED), set(ALLOWED) - set(callers())
