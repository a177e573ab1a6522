"""DynamoDB tables of one AWS region, each ready to be an mcrepl source or replica.

Guarantees for every table: the dataset's key schema; streams with NEW_AND_OLD_IMAGES
(the DynamoDB adapter captures from them and needs the old image to tell updates from
inserts); on-demand capacity (a replica catching up after an outage writes in
bursts); point-in-time recovery; SSE with a customer-managed KMS key (the replica's
``kms_key`` or a rotated key made here, one per region); deletion protection and Pulumi
``protect`` on tables and keys (a ``pulumi destroy`` must not take the data with it).
Each region gets its own explicit ``aws.Provider`` so nothing depends on the ambient
``aws:region`` setting.
"""

from __future__ import annotations

from typing import Sequence

import pulumi
import pulumi_aws as aws

from .topology import TablePlan

STREAM_VIEW = "NEW_AND_OLD_IMAGES"


class AwsReplica(pulumi.ComponentResource):
    """All mcrepl tables in ``region``; ``tables`` maps table name → its outputs."""

    provider: aws.Provider
    kms_key_arn: pulumi.Output[str] | None
    tables: dict[str, aws.dynamodb.Table]

    def __init__(self, name: str, region: str, plans: Sequence[TablePlan], *, alias: str,
                 deletion_protection: bool = True,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mcrepl:aws:Replica", name, {"region": region}, opts)
        self.region = region
        self.provider = aws.Provider(f"{name}-provider", region=region,
                                     opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=self.provider)
        kept = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(protect=True))
        self.kms_key_arn = None
        if any(p.kms_key is None for p in plans):
            key = aws.kms.Key(f"{name}-cmk", description=f"mcrepl DynamoDB tables in {region}",
                              enable_key_rotation=True, deletion_window_in_days=30, opts=kept)
            aws.kms.Alias(f"{name}-cmk-alias", name=alias,
                          target_key_id=key.key_id, opts=child)
            self.kms_key_arn = key.arn
        self.tables = {p.name: self._table(name, p, deletion_protection, kept)
                       for p in plans}
        self.register_outputs({"tables": {n: t.arn for n, t in self.tables.items()}})

    def _table(self, name: str, plan: TablePlan, deletion_protection: bool,
               opts: pulumi.ResourceOptions) -> aws.dynamodb.Table:
        key = plan.key_schema
        attributes = [aws.dynamodb.TableAttributeArgs(name=key.partition.name, type=key.partition.type)]
        if key.sort is not None:
            attributes.append(aws.dynamodb.TableAttributeArgs(name=key.sort.name, type=key.sort.type))
        return aws.dynamodb.Table(
            f"{name}-{plan.dataset}",
            name=plan.name,
            billing_mode="PAY_PER_REQUEST",
            hash_key=key.partition.name,
            range_key=key.sort.name if key.sort else None,
            attributes=attributes,
            stream_enabled=True,
            stream_view_type=STREAM_VIEW,
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(
                enabled=True, kms_key_arn=plan.kms_key or self.kms_key_arn),
            deletion_protection_enabled=deletion_protection,
            tags={"mcrepl:dataset": plan.dataset, "mcrepl:replica": plan.location},
            opts=opts)

    def outputs(self) -> dict[str, dict[str, pulumi.Output[str]]]:
        """``table name → {arn, stream_arn, kms_key}`` for the stack outputs."""
        return {n: {"arn": t.arn, "stream_arn": t.stream_arn,
                    "kms_key": t.server_side_encryption.apply(lambda s: s.kms_key_arn if s else None)}
                for n, t in self.tables.items()}
