"""Adapters are found by entry point, loaded lazily, protected from overwrites; validate acts on capabilities.

The entry-point test builds a tiny distribution that is not part of this repository (a
wheel made here, installed by pip into a temporary folder) and shows a fresh process
finding its adapter: the config accepts ``tiny:REGION`` with the adapter's own settings
model, ``open_adapter`` returns its class, and the shipped contract suite runs against it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from mcrepl.adapters import adapter_spec, open_adapter, providers, refresh, register_adapter, unregister_adapter
from mcrepl.adapters.base import ConfigError
from mcrepl.adapters.base.roles import ChangeSource, Heartbeats, Lifecycle, Maintenance, Replica, roles_of
from mcrepl.adapters.memory.settings import SPEC as MEMORY
from mcrepl.orchestrator.config import McreplConfig
from mcrepl.policies.engine import evaluate

TINY = {
    "tiny_mcrepl/__init__.py": '''
        """A third party's adapter: the in-memory store under another name, with its own settings."""
        from pydantic import Field
        from mcrepl.adapters.base import Capabilities
        from mcrepl.adapters.base.settings import AdapterSettings
        from mcrepl.adapters.base.spec import AdapterSpec

        class TinySettings(AdapterSettings):
            namespace: str = Field("", description="keeps stores apart")
            shards: int = Field(1, ge=1, description="a setting only this adapter has")

        SPEC = AdapterSpec(name="tiny", adapter="tiny_mcrepl.adapter:TinyAdapter", settings=TinySettings,
                           capabilities=Capabilities(incremental_capture=True, transactional_batch=False,
                                                     max_record_bytes=1 << 20, capture_sees_deletes=False),
                           cloud="aws", install="pip install tiny-mcrepl")
    ''',
    "tiny_mcrepl/adapter.py": '''
        from mcrepl.adapters.memory import MemoryAdapter
        from tiny_mcrepl import SPEC

        class TinyAdapter(MemoryAdapter):
            capabilities = SPEC.capabilities
    ''',
    "tiny_mcrepl/test_tiny_contract.py": '''
        import pytest
        from mcrepl.adapters import open_adapter
        from mcrepl.adapters.base import KeyAttribute, KeySchema, ReplicaTarget
        from mcrepl.testing import AdapterContract, dropping

        class TestTiny(AdapterContract):
            @pytest.fixture
            def open_store(self):
                def open_one(kind="document", key_schema=None, name=None):
                    schema = key_schema or KeySchema(KeyAttribute("name" if kind == "blob" else "pk"))
                    return open_adapter(ReplicaTarget("tiny:eu-west-1", "tiny", "eu-west-1", "contract", kind,
                                                      schema, name or "t", {"namespace": "ns"}))
                with dropping(open_one) as factory:
                    yield factory
    ''',
}


def _wheel(tmp: Path) -> Path:
    """A wheel of the tiny distribution, written by hand (no build backend, no network)."""
    dist = "tiny_mcrepl-0.1.dist-info"
    files = {name: textwrap.dedent(text).lstrip() for name, text in TINY.items()}
    files[f"{dist}/METADATA"] = "Metadata-Version: 2.1\nName: tiny-mcrepl\nVersion: 0.1\n"
    files[f"{dist}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: mcrepl-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{dist}/entry_points.txt"] = ("[mcrepl.adapters]\ntiny = tiny_mcrepl:SPEC\n"
                                         "dynamodb = tiny_mcrepl:SPEC\n")     # tries to take a built-in name
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    path = tmp / "tiny_mcrepl-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


@pytest.fixture(scope="module")
def tiny_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("tiny")
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--target", str(site), str(_wheel(tmp))], check=True)
    return site


def _python(site: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=120)


def test_an_installed_distribution_adds_an_adapter(tiny_site: Path) -> None:
    run = _python(tiny_site, '''
        from mcrepl.adapters import open_adapter, providers
        from mcrepl.orchestrator.config import McreplConfig
        print(providers()["tiny"], providers()["dynamodb"])
        config = McreplConfig.model_validate({"profile": "local", "providers": {"tiny": {"shards": 3}},
            "datasets": {"orders": {"key": {"partition": "id"}, "primary": "dynamodb:eu-west-1",
                                    "replicas": ["tiny:eu-central-1"]}}})
        print(config.providers.settings_for("tiny").shards)
        adapter = open_adapter(config.target("orders", "tiny:eu-central-1"))
        print(type(adapter).__name__, adapter.target.options["shards"])
        open_adapter(config.target("orders", "dynamodb:eu-west-1", {"dynamodb": "http://127.0.0.1:1"}))
        print(type(open_adapter(config.target("orders", "dynamodb:eu-west-1", {"dynamodb": "http://x"}))).__name__)
    ''')
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["tiny-mcrepl", "mcrepl", "3", "TinyAdapter", "3", "DynamoDBAdapter"]
    assert "ignoring entry point dynamodb" in run.stderr, "a built-in name is never taken over, and it says so"


def test_the_installed_adapters_settings_are_validated(tiny_site: Path) -> None:
    run = _python(tiny_site, '''
        from mcrepl.orchestrator.config import McreplConfig
        McreplConfig.model_validate({"providers": {"tiny": {"shards": 0}}, "datasets": {"orders": {
            "key": {"partition": "id"}, "primary": "tiny:eu-west-1", "replicas": ["dynamodb:eu-west-1"]}}})
    ''')
    assert run.returncode != 0 and "shards" in run.stderr


def test_the_shipped_suite_runs_against_the_installed_adapter(tiny_site: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(tiny_site)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                          str(tiny_site / "tiny_mcrepl" / "test_tiny_contract.py")],
                         env=env, capture_output=True, text=True, timeout=300, cwd=tiny_site)
    assert run.returncode == 0, run.stdout[-3000:]
    assert " passed" in run.stdout and "failed" not in run.stdout
    assert "capture_sees_deletes is false" in run.stdout or "skipped" in run.stdout


def test_register_refuses_to_overwrite_and_lookup_is_lazy() -> None:
    with pytest.raises(ConfigError, match="already registered"):
        register_adapter(dataclasses.replace(MEMORY))            # another spec under a taken name
    spec = dataclasses.replace(MEMORY, name="memory-two")
    register_adapter(spec)
    try:
        assert adapter_spec("memory-two") is spec and "memory-two" in providers()
        register_adapter(spec)                                   # the same spec again: fine
    finally:
        unregister_adapter("memory-two")
        refresh()
    assert "memory-two" not in providers()


def test_a_missing_sdk_says_what_to_install() -> None:
    spec = dataclasses.replace(MEMORY, name="needs-sdk", adapter="mcrepl.adapters.s3.adapter:S3Adapter",
                               install="pip install 'mcrepl[aws]'")
    import builtins
    real = builtins.__import__

    def no_boto3(name: str, *args: object, **kw: object) -> object:
        if name == "boto3" or name.startswith("boto3.") or name.startswith("botocore"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *args, **kw)  # type: ignore[arg-type]

    for module in [m for m in sys.modules if m.startswith(("mcrepl.adapters.s3.adapter", "mcrepl.adapters.s3.bucket_io",
                                                           "mcrepl.adapters.s3.errors"))]:
        del sys.modules[module]
    builtins.__import__ = no_boto3  # type: ignore[assignment]
    try:
        with pytest.raises(ConfigError) as info:
            spec.load()
    finally:
        builtins.__import__ = real
    assert "not installed" in str(info.value) and info.value.fix == "pip install 'mcrepl[aws]'"


def test_every_adapter_plays_the_roles() -> None:
    for name in ("memory",):
        from mcrepl.adapters.base import KeyAttribute, KeySchema, ReplicaTarget
        adapter = open_adapter(ReplicaTarget(f"{name}:x", name, "x", "d", "document", KeySchema(KeyAttribute("pk")),
                                             "r", {"namespace": "roles"}))
        assert roles_of(adapter) == ["Lifecycle", "ChangeSource", "Replica", "Heartbeats", "Maintenance"]
        assert isinstance(adapter, (Lifecycle, ChangeSource, Replica, Heartbeats, Maintenance))
        assert [p.id for p in adapter.partitions()] == ["all"]


def _config(primary: str, replica: str, **providers_block: object) -> McreplConfig:
    return McreplConfig.model_validate({"providers": providers_block, "datasets": {"orders": {
        "key": {"partition": "id"}, "primary": primary, "replicas": [replica]}}})


def test_validate_warns_about_a_primary_that_cannot_see_deletes() -> None:
    found = [v for v in evaluate(_config("cosmos:westeurope", "dynamodb:eu-west-1")) if v.rule_id == "capability.fit"]
    assert [(v.severity, v.resource) for v in found] == [("warning", "orders@cosmos:westeurope")]
    assert "capture_sees_deletes" in found[0].why
    assert not [v for v in evaluate(_config("dynamodb:eu-west-1", "cosmos:westeurope"))
                if v.rule_id == "capability.fit"]


def test_capability_findings_come_from_capabilities_not_names() -> None:
    """A store under any name that declares the same limits gets the same findings."""
    limited = dataclasses.replace(MEMORY, name="limited", cloud="aws", capabilities=dataclasses.replace(
        MEMORY.capabilities, capture_sees_deletes=False, conditional_writes=False, holds_sets=False))
    register_adapter(limited)
    try:
        found = {(v.severity, v.resource, v.why.split(" (")[0][-30:]) for v in
                 evaluate(_config("limited:eu-west-1", "dynamodb:eu-west-1")) if v.rule_id == "capability.fit"}
        severities = sorted(s for s, _, _ in found)
        assert severities == ["error", "warning"]                       # deletes; conditional writes
        sets = [v for v in evaluate(_config("dynamodb:eu-west-1", "limited:eu-central-1"))
                if v.rule_id == "capability.fit"]
        assert sorted(v.severity for v in sets) == ["error", "warning"]  # conditional writes; sets
        assert any("holds_sets" in v.why for v in sets)
    finally:
        unregister_adapter("limited")
        refresh()


def test_the_cli_lists_adapters_and_documents_settings_from_the_model() -> None:
    import json

    from typer.testing import CliRunner

    from mcrepl.orchestrator.cli import app
    listed = CliRunner().invoke(app, ["adapters", "list", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert {row["name"] for row in json.loads(listed.output)} >= {"dynamodb", "cosmos", "gcs", "s3", "memory"}
    shown = CliRunner().invoke(app, ["adapters", "show", "s3", "--format", "json"])
    info = json.loads(shown.output)
    from mcrepl.adapters.s3.settings import S3Settings
    assert set(info["settings"]["fields"]) == set(S3Settings.model_fields)
    assert info["capabilities"]["capture_sees_deletes"] is True and info["cloud"] == "aws"
    unknown = CliRunner().invoke(app, ["adapters", "show", "nope"])
    assert unknown.exit_code != 0 and "unknown provider" in unknown.output
