"""Run the ``mcrepl`` CrossGuard pack on a mocked program's resources, as the Pulumi engine would.

The engine talks to a policy pack over the analyzer gRPC protocol: ``Configure`` with the
policy config, then one ``Analyze`` per resource (type, input properties as a protobuf
``Struct``, options, provider). :func:`analyze` sends exactly those messages
(``pulumi.runtime.proto.analyzer_pb2``) to the analyzer servicer of ``pulumi_policy``
(the object ``PolicyPack`` serves; only the network between them is left out), for every
resource a :func:`~mcrepl_infra.testing.run_program` run registered.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pulumi"))
sys.path.insert(0, str(ROOT / "pulumi/policy-pack"))

from mcrepl_infra.testing import ProgramRun  # noqa: E402
from mcrepl_policy import PACK_NAME, PACK_VERSION, pack_policies  # noqa: E402

MANDATORY = analyzer_pb2.EnforcementLevel.Value("MANDATORY")


@dataclass(frozen=True)
class Diagnostic:
    """One violation the pack reported: policy, resource (type, logical name), message, level."""

    policy: str
    type: str
    name: str
    message: str
    mandatory: bool


def _struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    json_format.ParseDict(dict(value), out)
    return out


def analyzer(pack_config: Mapping[str, Mapping[str, Any]]) -> _PolicyAnalyzerServicer:
    """The pack's analyzer, configured the way ``--policy-pack-config FILE`` configures it."""
    servicer = _PolicyAnalyzerServicer(PACK_NAME, PACK_VERSION, pack_policies(), EnforcementLevel.MANDATORY)
    request = analyzer_pb2.ConfigureAnalyzerRequest(policyConfig={
        name: analyzer_pb2.PolicyConfig(enforcementLevel=MANDATORY, properties=_struct(props))
        for name, props in pack_config.items()})
    servicer.Configure(request, None)
    return servicer


def analyze(run: ProgramRun, pack_config: Mapping[str, Mapping[str, Any]]) -> list[Diagnostic]:
    """Every diagnostic of the pack over every resource ``run`` registered."""
    servicer = analyzer(pack_config)
    providers = {r.name: r for r in run.mocks.resources if r.type.startswith("pulumi:providers:")}
    found: list[Diagnostic] = []
    for r in run.mocks.resources:
        if r.type.startswith("mcrepl:"):
            continue                          # component resources: no properties of their own
        protect, _ = run.mocks.options.get((r.type, r.name), (False, False))
        request = analyzer_pb2.AnalyzeRequest(
            type=r.type, properties=_struct(r.inputs), urn=f"urn:pulumi:test::mcrepl::{r.type}::{r.name}",
            name=r.name, options=analyzer_pb2.AnalyzerResourceOptions(protect=protect))
        if r.provider in providers:
            p = providers[r.provider]
            request.provider.CopyFrom(analyzer_pb2.AnalyzerProviderResource(
                type=p.type, properties=_struct(p.inputs), urn=f"urn:pulumi:test::mcrepl::{p.type}::{p.name}",
                name=p.name))
        response = servicer.Analyze(request, None)
        found += [Diagnostic(d.policyName, r.type, r.name, d.message, d.enforcementLevel == MANDATORY)
                  for d in response.diagnostics]
    return found
