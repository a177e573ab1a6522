"""Run the program under Pulumi's own mock runtime (``pulumi.runtime.set_mocks``).

No engine, no cloud: Pulumi's mock monitor hands every resource registration to
:class:`RecordingMocks`, which records it and answers with its inputs plus the few
attributes the clouds compute (ARNs, endpoints, ids) in the clouds' documented formats.
The tests, and anyone changing the program, use :func:`run_program` to see exactly
which resources a config yields, with which inputs, under which provider.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pulumi
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks
from pulumi.runtime.settings import get_root_resource

ACCOUNT = "123456789012"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
GCS_AGENT = "service-1234567890@gs-project-accounts.iam.gserviceaccount.com"
PROJECT_NUMBER = "1234567890"
TENANT = "11111111-1111-1111-1111-111111111111"
#: the account's outbound web identity federation issuer (the lookup's answer under mocks)
AWS_ISSUER = "https://0a1b2c3d-4e5f-6789-abcd-ef0123456789.tokens.sts.global.api.aws"


@dataclass
class Registered:
    """One resource registration seen by the mock monitor."""

    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    provider: str | None          # logical name of the explicit provider, if any
    region: str | None            # AWS region of that provider


def _provider_name(reference: str | None) -> str | None:
    # "urn:pulumi:STACK::PROJECT::pulumi:providers:aws::NAME::ID" → NAME
    if not reference:
        return None
    urn = reference.split("::")
    return urn[-2] if len(urn) >= 2 else None


@dataclass
class RecordingMocks(Mocks):
    """Records registrations; computes cloud-assigned attributes per resource type."""

    resources: list[Registered] = field(default_factory=list)
    calls: list[MockCallArgs] = field(default_factory=list)
    #: (type, logical name) → (protect, retain_on_delete), recorded by a stack transformation
    options: dict[tuple[str, str], tuple[bool, bool]] = field(default_factory=dict)
    #: (type, logical name) → ignoreChanges, recorded by the same transformation
    ignored: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    provider_regions: dict[str, str] = field(default_factory=dict)

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict]:
        provider = _provider_name(args.provider)
        if args.typ == "pulumi:providers:aws":
            self.provider_regions[args.name] = args.inputs.get("region", "")
        region = self.provider_regions.get(provider or "")
        computed = _COMPUTED.get(args.typ, lambda a, r: {})(args, region)
        outputs = {**args.inputs, **computed}
        self.resources.append(Registered(args.typ, args.name, dict(args.inputs), outputs, provider, region))
        return computed.get("id") or f"{args.name}_id", outputs

    def call(self, args: MockCallArgs) -> tuple[dict, list]:
        self.calls.append(args)
        if args.token == "gcp:storage/getProjectServiceAccount:getProjectServiceAccount":
            return {"emailAddress": GCS_AGENT, "project": args.args.get("project")}, []
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/test", "userId": "TEST"}, []
        if args.token == "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider":
            return {"arn": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{args.args['url'].split('://', 1)[1]}",
                    "url": args.args["url"]}, []
        if args.token == "aws:iam/getOutboundWebIdentityFederation:getOutboundWebIdentityFederation":
            return {"issuerIdentifier": AWS_ISSUER}, []
        return {}, []

    def of_type(self, typ: str) -> list[Registered]:
        """Every registration of resource type ``typ`` (e.g. ``aws:dynamodb/table:Table``)."""
        return [r for r in self.resources if r.type == typ]

    def types(self) -> set[str]:
        """Every resource type registered (components included)."""
        return {r.type for r in self.resources}


def _table(a: MockResourceArgs, region: str | None) -> dict:
    arn = f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{a.inputs['name']}"
    return {"arn": arn, "streamArn": f"{arn}/stream/2026-11-25T00:00:00.000", "streamLabel": "2026-11-25T00:00:00.000"}


def _kms_key(a: MockResourceArgs, region: str | None) -> dict:
    key_id = f"{a.name}-0000-key"
    return {"keyId": key_id, "arn": f"arn:aws:kms:{region}:{ACCOUNT}:key/{key_id}"}


def _arm_id(a: MockResourceArgs, kind: str, name_key: str) -> str:
    group = a.inputs.get("resourceGroupName", "rg")
    return (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/{kind}/"
            f"{a.inputs.get(name_key, a.name)}")


_COMPUTED: dict[str, Callable[[MockResourceArgs, str | None], dict]] = {
    "aws:dynamodb/table:Table": _table,
    "aws:kms/key:Key": _kms_key,
    "aws:iam/role:Role": lambda a, r: {"arn": f"arn:aws:iam::{ACCOUNT}:role/{a.inputs['name']}"},
    "aws:route53/healthCheck:HealthCheck": lambda a, r: {"id": f"hc-{a.name}"},
    "azure-native:resources:ResourceGroup": lambda a, r: {
        "name": a.inputs["resourceGroupName"],
        "id": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{a.inputs['resourceGroupName']}"},
    "azure-native:cosmosdb:DatabaseAccount": lambda a, r: {
        "name": a.inputs["accountName"],
        "id": _arm_id(a, "Microsoft.DocumentDB/databaseAccounts", "accountName"),
        "documentEndpoint": f"https://{a.inputs['accountName']}.documents.azure.com:443/"},
    "azure-native:cosmosdb:SqlResourceSqlDatabase": lambda a, r: {"name": a.inputs["databaseName"]},
    "azure-native:cosmosdb:SqlResourceSqlContainer": lambda a, r: {"name": a.inputs["containerName"]},
    "azure-native:managedidentity:UserAssignedIdentity": lambda a, r: {
        "principalId": f"principal-{a.inputs['resourceName']}", "clientId": f"client-{a.inputs['resourceName']}",
        "tenantId": TENANT, "name": a.inputs["resourceName"],
        "id": _arm_id(a, "Microsoft.ManagedIdentity/userAssignedIdentities", "resourceName")},
    "azure-native:trafficmanager:Profile": lambda a, r: {
        "dnsConfig": {**a.inputs.get("dnsConfig", {}),
                      "fqdn": f"{a.inputs['dnsConfig']['relativeName']}.trafficmanager.net"}},
    "gcp:storage/bucket:Bucket": lambda a, r: {"url": f"gs://{a.inputs['name']}",
                                                "selfLink": f"https://www.googleapis.com/storage/v1/b/{a.inputs['name']}"},
    "gcp:kms/keyRing:KeyRing": lambda a, r: {
        "id": f"projects/{a.inputs['project']}/locations/{a.inputs['location']}/keyRings/{a.inputs['name']}"},
    "gcp:kms/cryptoKey:CryptoKey": lambda a, r: {"id": f"{a.inputs['keyRing']}/cryptoKeys/{a.inputs['name']}"},
    "gcp:serviceaccount/account:Account": lambda a, r: {
        "email": f"{a.inputs['accountId']}@{a.inputs['project']}.iam.gserviceaccount.com",
        "name": f"projects/{a.inputs['project']}/serviceAccounts/"
                f"{a.inputs['accountId']}@{a.inputs['project']}.iam.gserviceaccount.com",
        "uniqueId": str(int(hashlib.sha256(a.inputs["accountId"].encode()).hexdigest()[:15], 16))},
    "gcp:iam/workloadIdentityPool:WorkloadIdentityPool": lambda a, r: {
        "name": f"projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/{a.inputs['workloadIdentityPoolId']}"},
    "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider": lambda a, r: {
        "name": f"projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/"
                f"{a.inputs['workloadIdentityPoolId']}/providers/{a.inputs['workloadIdentityPoolProviderId']}"},
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": lambda a, r: {
        "arn": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{a.inputs['url'].split('://', 1)[1]}"},
    "aws:iam/outboundWebIdentityFederation:OutboundWebIdentityFederation": lambda a, r: {
        "issuerIdentifier": AWS_ISSUER},
}


@dataclass
class ProgramRun:
    """The result of one mocked run: the program's :class:`Stack`, registrations, outputs."""

    stack: Any
    mocks: RecordingMocks
    outputs: dict[str, Any]


#: a stack transformation (``pulumi.runtime.register_stack_transformation``): edits one
#: resource's inputs or options on the way to the engine, as a changed program would
Transformation = Callable[[pulumi.ResourceTransformationArgs], Optional[pulumi.ResourceTransformationResult]]


def run_program(config: Any, stack: str = "test", mocks: RecordingMocks | None = None, *,
                alter: Transformation | None = None, extra: Callable[[Any], None] | None = None) -> ProgramRun:
    """Build ``config`` under fresh mocks and resolve every stack output.

    ``alter`` edits resources as they are registered and ``extra`` declares more after the
    program (given its :class:`~.program.Stack`): how the policy-pack tests make the
    deliberately broken stacks. Exceptions raised by the program (a :class:`PolicyError`,
    a :class:`ConfigError`) propagate unchanged, as they would fail ``pulumi preview``;
    pass ``mocks`` to see what was registered before the failure.
    """
    from .program import build

    mocks = mocks if mocks is not None else RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="mcrepl", stack=stack, preview=False)
    result: dict[str, Any] = {}

    def remember(args: pulumi.ResourceTransformationArgs) -> None:
        mocks.options[(args.type_, args.name)] = (bool(args.opts.protect), bool(args.opts.retain_on_delete))
        mocks.ignored[(args.type_, args.name)] = list(args.opts.ignore_changes or [])

    @pulumi.runtime.test
    def _run() -> pulumi.Output:
        root = get_root_resource()          # outlives set_mocks: drop the last run's transformations
        if root is not None:
            root._transformations = None
        if alter is not None:        # applied in registration order: remember sees what alter made
            pulumi.runtime.register_stack_transformation(alter)
        pulumi.runtime.register_stack_transformation(remember)
        built = build(config, stack)
        if extra is not None:
            extra(built)
        result["stack"] = built
        return pulumi.Output.from_input(built.outputs).apply(lambda out: result.__setitem__("outputs", out))

    _run()
    return ProgramRun(result["stack"], mocks, result["outputs"])
