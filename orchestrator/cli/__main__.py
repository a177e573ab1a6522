"""``python -m mcrepl.orchestrator.cli``: the same as the ``mcrepl`` command."""

from . import main

main()
