"""The ``policies:`` section of ``mcrepl.yaml``, as a typed model.

Pydantic checks shapes here (a bad policy file is a :class:`ConfigError`, exit 2);
checks that need the rest of the config (a rule naming a dataset that does not exist,
a jurisdiction the catalogue does not know) are in :func:`mcrepl.policies.engine.policy_errors`.
Neither is a *finding*: findings are :class:`~mcrepl.policies.rules.Violation` objects.

Example::

    policies:
      residency:
        classes: {pii: [EU], financial: [EU, UK, CH], public: ["*"]}
        records:
          - datasets: [customers]
            field: country
      encryption:
        at_rest: cmk_required
        fields:
          - dataset: customers
            fields: [email, phone]
            plaintext_in: [EU]
        keyring: {type: local, path: .mcrepl/keyring.json}
      iam:
        cosmos_auth: rbac
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecordFieldRule(_Strict):
    """Per-record residency: a record field holding a country code restricts its replicas.

    A record whose ``field`` says ``DE`` (jurisdiction ``EU``) goes only to replicas in
    ``EU`` plus whatever ``also`` adds for ``EU``. ``restrict`` limits the rule to records
    from some jurisdictions (default: every record). Default deny: a record whose field is
    missing or not an ISO 3166-1 alpha-2 code (``XX``, ``Germany``) is withheld from every
    replica the rule restricts and quarantined there; ``missing: withhold`` is the only
    choice (``send`` was removed). ``EL`` and ``UK`` are read as ``GR`` and ``GB``.
    Deletes (tombstones hold only the key) are never withheld by this rule.
    """

    datasets: list[str] = Field(min_length=1)
    field: str
    restrict: list[str] | None = None
    also: dict[str, list[str]] = Field(default_factory=dict)
    missing: Literal["withhold"] = "withhold"

    @field_validator("missing", mode="before")
    @classmethod
    def _no_send(cls, v: object) -> object:
        if v == "send":
            raise ValueError("'missing: send' was removed: a record without a usable country is never sent "
                             "where the rule restricts it (it is quarantined); give such records a country, "
                             "or narrow 'restrict'")
        return v


class ResidencySpec(_Strict):
    """``classes``: classification → jurisdictions it may live in (``"*"``: anywhere).

    A classification with no entry is unrestricted. It applies to a dataset's
    ``classification`` and to each entry of its ``fields`` map (field → classification).
    """

    classes: dict[str, list[str]] = Field(default_factory=dict)
    records: list[RecordFieldRule] = Field(default_factory=list)


class FieldEncryptionRule(_Strict):
    """Client-side field encryption for one dataset.

    ``fields`` (dotted paths; default: the dataset's ``sensitive_fields`` plus every
    field in its ``fields`` map) are encrypted before they are sent to any replica whose
    jurisdiction is not in ``plaintext_in`` (empty: encrypted towards every replica).
    """

    dataset: str
    fields: list[str] | None = None
    plaintext_in: list[str] = Field(default_factory=list)


class KeyringSpec(_Strict):
    """Where key-encryption keys come from.

    ``local``: a key file (``mcrepl keys init``; tests and demo); ``path`` is relative to
    the config file (default ``STATE_DIR/keyring.json``). ``aws-kms``: ``key_id``
    is a KMS key ARN or alias. ``azure-keyvault``: ``key_id`` is the key URL
    (``https://VAULT.vault.azure.net/keys/NAME``). ``gcp-kms``: ``key_id`` is
    ``projects/P/locations/L/keyRings/R/cryptoKeys/K``.
    """

    type: Literal["local", "aws-kms", "azure-keyvault", "gcp-kms"] = "local"
    path: str | None = None
    key_id: str | None = None
    region: str | None = None
    endpoint: str | None = None


class EncryptionSpec(_Strict):
    """At-rest key rules, field encryption and the keyring.

    ``at_rest: cmk_required`` refuses any location without a customer-managed key
    (``kms_key`` on the replica: DynamoDB SSE-KMS, Cosmos DB CMK, GCS CMEK).
    TLS for every non-local endpoint is always required (rule ``encryption.tls``).
    ``datakeys`` is the SQLite file holding the wrapped data keys (default:
    ``STATE_DIR/datakeys.db``, beside the state store; relative paths belong to the config file).
    ``capture_log``: ``auto`` encrypts a dataset's capture-log bodies with its data keys
    exactly when ``orchestrator.location`` is not allowed to hold its data; ``encrypt``
    always does; ``plaintext`` never does (rule ``residency.capture-log`` then refuses a
    log outside the allowed jurisdictions).
    """

    at_rest: Literal["provider_managed", "cmk_required"] = "provider_managed"
    fields: list[FieldEncryptionRule] = Field(default_factory=list)
    keyring: KeyringSpec = KeyringSpec()
    datakeys: str | None = None
    capture_log: Literal["auto", "encrypt", "plaintext"] = "auto"


class IamSpec(_Strict):
    """IAM policy knobs.

    ``cosmos_auth: rbac`` (default) flags Cosmos DB account-key auth outside the local
    emulator profile; ``key`` accepts it. Account, subscription and project ids used in
    rendered documents come from the ``provisioning:`` section (see ``iam.ResourceIds``).
    """

    cosmos_auth: Literal["rbac", "key"] = "rbac"


class OrchestratorSpec(_Strict):
    """Where the orchestrator (and so its state store and capture log) runs.

    ``location`` is a cloud region (``aws:eu-west-1``, ``azure:westeurope``,
    ``gcp:europe-west1``; ``dynamodb:``/``cosmos:``/``gcs:`` work too) or an ISO 3166-1
    alpha-2 country for hosts outside a cloud (``DE``). Undeclared, the location is unknown
    and counts as outside every jurisdiction (default deny).
    """

    location: str | None = None


class Policies(_Strict):
    """The whole ``policies:`` section; every part is optional.

    ``disabled`` switches rules off by id (they are then reported as skipped, never silently).
    """

    residency: ResidencySpec = ResidencySpec()
    encryption: EncryptionSpec = EncryptionSpec()
    iam: IamSpec = IamSpec()
    disabled: list[str] = Field(default_factory=list)


__all__ = ["EncryptionSpec", "FieldEncryptionRule", "IamSpec", "KeyringSpec", "OrchestratorSpec", "Policies",
           "RecordFieldRule", "ResidencySpec", "with_paths_from"]


def with_paths_from(policies: Policies, config_dir: Path) -> Policies:
    """``policies`` with a relative ``keyring.path`` and ``datakeys`` made absolute against
    ``config_dir`` (the config file's folder).

    Why: resolved against the working directory, a command run from elsewhere would
    silently create a second key file and data-key store and write data no other run can
    read. ``load_config`` calls this, as it does for ``state_dir``.
    """
    enc = policies.encryption

    def absolute(path: str | None) -> str | None:
        return path if path is None or Path(path).is_absolute() else str((config_dir / path).resolve())

    keyring = enc.keyring.model_copy(update={"path": absolute(enc.keyring.path)})
    return policies.model_copy(update={"encryption": enc.model_copy(
        update={"keyring": keyring, "datakeys": absolute(enc.datakeys)})})
