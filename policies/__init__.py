"""Residency, IAM and encryption policies: evaluated at plan time and on every record.

Modules: :mod:`.residency` (region catalogue), :mod:`.engine` (``evaluate``),
:mod:`.iam` (renderers and linter), :mod:`.encryption` (field encryption, keyrings),
:mod:`.router` (the sync engine's policy routing hook). Importing this package loads no
cloud SDK.
"""
