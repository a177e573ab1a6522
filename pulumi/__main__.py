"""Pulumi entry point: provision the topology of the mcrepl.yaml named by ``mcrepl:configPath``.

Thin on purpose; the program lives in the ``mcrepl_infra`` package beside this file
(this folder has no ``__init__.py`` so it never shadows the ``pulumi`` SDK).
"""

from pathlib import Path

from mcrepl_infra.program import run

run(Path(__file__).resolve().parent)
