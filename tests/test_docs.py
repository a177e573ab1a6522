"""Docs that are generated from the code must match it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_matches_help_output() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "docs/gen_cli_reference.py"), "--check"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr + "\nrun: python docs/gen_cli_reference.py"
