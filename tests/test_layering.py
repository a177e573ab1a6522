"""Dependencies flow one way: adapters ← testing ← policies ← orchestrator ← client ← failover.

Checked on the source (imports at module level, outside ``TYPE_CHECKING``), so a later
change that makes the adapters know the engine, or puts a cloud SDK outside its adapter,
fails here rather than in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["adapters", "testing", "policies", "orchestrator", "client", "failover"]   # each may import only those before it
SDKS = ("boto3", "botocore", "azure", "google")                        # only adapters (and keyrings) talk to clouds
SDK_ALLOWED = ("adapters/aws", "adapters/dynamodb", "adapters/cosmos", "adapters/gcs", "adapters/s3", "adapters/route53",
               "policies/cloud_keyrings.py",
               "orchestrator/localstack")                              # the local stack checks its emulators answer


def module_imports(path: Path) -> list[str]:
    """Top-level imported module names, skipping ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                names.extend(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.append(node.module)
            for field in ("body", "orelse", "handlers", "finalbody"):
                child = getattr(node, field, None)
                if isinstance(child, list) and child and isinstance(child[0], ast.AST) and \
                        not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    visit([c for c in child if isinstance(c, ast.stmt)])
    visit(tree.body)
    return names


def sources(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_lower_layers(layer: str) -> None:
    forbidden = {f"mcrepl.{higher}" for higher in LAYERS[LAYERS.index(layer) + 1:]}
    offenders = [f"{path.relative_to(ROOT)} imports {name}" for path in sources(layer)
                 for name in module_imports(path) if any(name == f or name.startswith(f + ".") for f in forbidden)]
    assert offenders == []


def test_cloud_sdks_stay_inside_their_adapters() -> None:
    offenders = []
    for layer in LAYERS:
        for path in sources(layer):
            rel = str(path.relative_to(ROOT))
            if rel.startswith(SDK_ALLOWED):
                continue
            offenders += [f"{rel} imports {name}" for name in module_imports(path)
                          if name.split(".")[0] in SDKS]
    assert offenders == []


def test_the_s3_adapter_uses_only_the_public_interface() -> None:
    """S3 is written as a third party would: mcrepl.adapters.base and its own package, nothing else of mcrepl."""
    offenders = [f"{path.relative_to(ROOT)} imports {name}" for path in sorted((ROOT / "adapters/s3").rglob("*.py"))
                 for name in module_imports(path)
                 if name.startswith("mcrepl.") and not name.startswith("mcrepl.adapters.base")]
    relative = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "adapters/s3").rglob("*.py"))
                if "from .." in path.read_text(encoding="utf-8")]
    assert offenders == [] and relative == []
