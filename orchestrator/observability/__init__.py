"""Observability: Prometheus metrics, the hash-chained audit trail, and redacting logs.

Each module has one job and imports nothing from the sync engine, so the engine, the
CLI and the drills can all use them without import cycles.
"""
