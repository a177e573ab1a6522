"""The orchestrator: configuration, the sync engine, state, observability and the CLI."""
