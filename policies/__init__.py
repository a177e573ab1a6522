"""Residency, IAM and encryption policies: evaluated at plan time and on every record.

Modules: :mod:`.residency` (region catalogue, country codes), :mod:`.engine`
(``evaluate``), :mod:`.plan_rules` and :mod:`.default_deny` (plan-time rules), :mod:`.iam`
(renderers and linter), :mod:`.encryption` (field encryption), :mod:`.datakeys` (the
wrapped data-key store), :mod:`.keyring` / :mod:`.cloud_keyrings` (key-encryption keys),
:mod:`.capture_log` (sealing the capture log), :mod:`.routing` / :mod:`.router` (the
per-record decision every write path asks). Importing this package loads no cloud SDK.
"""
