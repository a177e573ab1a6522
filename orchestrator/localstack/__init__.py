"""The local cloud stack: DynamoDB, Cosmos DB and Cloud Storage emulators on loopback.

One code path serves the pytest fixtures and ``mcrepl local up|status|down``:

* :class:`LocalStack` starts services in parallel on free 127.0.0.1 ports, waits until
  each answers and stops whole process groups (see :mod:`.stack`);
* :mod:`.lifecycle` keeps a detached stack described in ``endpoints.json`` so another
  process can find, check and stop it; :func:`read_endpoints` is what commands use to
  resolve ``endpoint: local`` in a config.
"""

from .errors import LocalStackError
from .lifecycle import ServiceStatus, UpResult, down, endpoints_from_env, local_dir, read_endpoints, status, up
from .services import (
    DEFAULT_SERVICES,
    EMULATOR_COSMOS_KEY,
    SERVICE_NAMES,
    SERVICES,
    Service,
    parse_services,
)
from .stack import LocalStack, RunningService, exit_cleanly_on_sigterm

__all__ = [
    "DEFAULT_SERVICES",
    "EMULATOR_COSMOS_KEY",
    "SERVICES",
    "SERVICE_NAMES",
    "LocalStack",
    "LocalStackError",
    "RunningService",
    "Service",
    "ServiceStatus",
    "UpResult",
    "down",
    "endpoints_from_env",
    "exit_cleanly_on_sigterm",
    "local_dir",
    "parse_services",
    "read_endpoints",
    "status",
    "up",
]
