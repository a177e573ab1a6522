"""OpenTelemetry traces: a span per pass, dataset, capture page, lane batch and store call.

The API is deliberately tiny, so instrumenting the engine is one line per point::

    with span("mcrepl.lane.batch", dataset=ds, replica=replica) as s:
        ...
        s.set(applied=3, outcome="ok")

or, where a whole method is the unit, a decorator that adds no indentation to the code it
wraps (``before``/``after`` turn the call's arguments and result into attributes)::

    @traced("mcrepl.lane.batch", before=lambda self, offset: {...}, after=lambda out, self, offset: {...})

Spans cost nothing until :func:`setup_tracing` installs an exporter. It honours the
standard variables: ``OTEL_TRACES_EXPORTER`` (``console`` prints spans to stderr,
``otlp`` sends them to ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
— ``pip install 'mcrepl[otlp]'`` — ``none`` disables), ``OTEL_SDK_DISABLED``,
``OTEL_SERVICE_NAME`` (default ``mcrepl``), ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER[_ARG]`` and ``OTEL_BSP_*``. With none set, no exporter is installed
(a command-line tool should not try a collector that is not there).

Every DynamoDB call (botocore) and every Cosmos DB and Cloud Storage call (both over
``requests``) becomes a child span of the batch or page that made it, through the
official instrumentations; context follows work into the engine's thread pool through
the threading instrumentation. Work units that run in another process (a future Dask
executor) carry context with :func:`inject` / :func:`extract`.

Every span gets ``outcome``: ``ok``, or ``error`` with the exception recorded (its text
redacted). Log lines inside a span carry its ``trace_id`` and ``span_id``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
import threading
from typing import Any, Callable, Iterator, Mapping, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode

from .redaction import scrub_text

F = TypeVar("F", bound=Callable[..., Any])
TRACER_NAME = "mcrepl"
_lock = threading.Lock()
_provider: Any = None
_instrumentors: list[Any] = []


class SpanHandle:
    """The span of a ``with span(...)`` block; :meth:`set` adds attributes, skipping ``None``."""

    def __init__(self, inner: trace.Span) -> None:
        self.inner = inner

    def set(self, **attributes: Any) -> "SpanHandle":
        """Add attributes; values that are not str/bool/int/float become redacted strings."""
        for key, value in _attributes(attributes).items():
            self.inner.set_attribute(key, value)
        return self

    @property
    def trace_id(self) -> str:
        """The trace id in hex (what backends show), or 32 zeros when tracing is off."""
        return format(self.inner.get_span_context().trace_id, "032x")


def _attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            out.update(_attributes({f"{key}.{k}": v for k, v in value.items()}))
        elif isinstance(value, (bool, int, float)):
            out[key] = value
        else:
            out[key] = scrub_text(str(value))
    return out


def tracer() -> trace.Tracer:
    """The tracer every mcrepl span comes from (the installed provider's, else the global one)."""
    provider = _provider
    return (provider.get_tracer(TRACER_NAME) if provider is not None else trace.get_tracer(TRACER_NAME))


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[SpanHandle]:
    """A span named ``name`` around the block, with ``attributes`` and an ``outcome``.

    An exception leaving the block sets ``outcome=error``, status ERROR and records the
    exception (redacted); it is re-raised unchanged.
    """
    with tracer().start_as_current_span(name, attributes=_attributes(attributes),
                                        record_exception=False, set_status_on_exception=False) as inner:
        handle = SpanHandle(inner)
        try:
            yield handle
        except BaseException as exc:
            message = scrub_text(f"{type(exc).__name__}: {exc}")
            inner.set_attribute("outcome", "error")
            inner.set_attribute("error.type", type(exc).__name__)
            inner.set_status(Status(StatusCode.ERROR, message))
            inner.add_event("exception", {"exception.type": type(exc).__name__, "exception.message": message})
            raise
        if not _has_attribute(inner, "outcome"):
            inner.set_attribute("outcome", "ok")


def _has_attribute(inner: Any, key: str) -> bool:
    attributes = getattr(inner, "attributes", None)
    return attributes is not None and key in attributes


def traced(name: str, before: Callable[..., Mapping[str, Any]] | None = None,
           after: Callable[..., Mapping[str, Any] | None] | None = None) -> Callable[[F], F]:
    """Decorator: run the function inside ``span(name)``.

    ``before(*args, **kwargs)`` gives the attributes known at the call (dataset, replica);
    ``after(result, *args, **kwargs)`` those known from the result (counts, outcome).
    """
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with span(name, **(before(*args, **kwargs) if before else {})) as s:
                result = fn(*args, **kwargs)
                if after is not None:
                    s.set(**(after(result, *args, **kwargs) or {}))
                return result
        return inner  # type: ignore[return-value]
    return wrap


def inject() -> dict[str, str]:
    """The current trace context as a picklable carrier (W3C ``traceparent``) for a work unit."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextlib.contextmanager
def extract(carrier: Mapping[str, str]) -> Iterator[None]:
    """Make the context of :func:`inject` current (in the worker that runs the unit)."""
    token = otel_context.attach(propagate.extract(dict(carrier)))
    try:
        yield
    finally:
        otel_context.detach(token)


# -- set-up --------------------------------------------------------------------------------------


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names and (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        names = ["otlp"]
    return [n for n in names if n != "none"]


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        # stderr: stdout carries the command's own output (tables, --format json)
        return ConsoleSpanExporter(out=sys.stderr)
    if name == "otlp":
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                                  os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
        transport = "grpc" if protocol == "grpc" else "http"
        try:
            module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{transport}.trace_exporter")
        except ImportError:
            package = "opentelemetry-exporter-otlp-proto-grpc" if protocol == "grpc" else "'mcrepl[otlp]'"
            raise RuntimeError(f"OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: pip install {package}") from None
        return module.OTLPSpanExporter()
    raise RuntimeError(f"OTEL_TRACES_EXPORTER={name!r} is not supported by mcrepl; use console, otlp or none")


def setup_tracing(env: Mapping[str, str] | None = None, exporter: Any = None) -> bool:
    """Install a tracer provider from the ``OTEL_*`` variables (or ``exporter``, for tests).

    Returns whether tracing is on. Idempotent until :func:`shutdown_tracing`. ``console``
    exports each span as it ends (an operator watching wants them now); any other
    exporter batches.
    """
    global _provider
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    names = _exporter_names(env)
    if exporter is None and not names:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    with _lock:
        if _provider is not None:
            return True
        resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "mcrepl"})
        provider = TracerProvider(resource=resource)
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        for name in names:
            made = _exporter(name)
            provider.add_span_processor(SimpleSpanProcessor(made) if name == "console" else BatchSpanProcessor(made))
        _provider = provider
        _instrument(provider)
    return True


def _instrument(provider: Any) -> None:
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.instrumentation.threading import ThreadingInstrumentor
    for instrumentor, kwargs in ((ThreadingInstrumentor(), {}),
                                 (BotocoreInstrumentor(), {"tracer_provider": provider}),
                                 (RequestsInstrumentor(), {"tracer_provider": provider})):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(**kwargs)
            _instrumentors.append(instrumentor)


def shutdown_tracing() -> None:
    """Flush and stop the provider and undo the instrumentation (end of a command, or a test)."""
    global _provider
    with _lock:
        provider, _provider = _provider, None
        while _instrumentors:
            _instrumentors.pop().uninstrument()
    if provider is not None:
        provider.shutdown()


def tracing_enabled() -> bool:
    """Whether :func:`setup_tracing` installed a provider."""
    return _provider is not None
