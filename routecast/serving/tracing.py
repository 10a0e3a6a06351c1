"""OpenTelemetry spans of the server (``serve --traces``, the ``otel`` extra): one span per request
(``routecast.chat`` / ``routecast.route``, with the request id), the route decision inside it
(``routecast.decide``) and each backend call (``routecast.backend_call``, with the model; a
cascade's steps are its calls).

Why a tracer or None rather than OpenTelemetry's no-op tracer: off (the default) routecast never
imports the OpenTelemetry SDK and each would-be span is one ``is None`` test and a shared
``nullcontext``; routecast's default install does not depend on it (the ``otel`` extra does).
"""

from __future__ import annotations

import contextlib
from typing import Any

from routecast.errors import ConfigError

#: what :func:`span` returns with tracing off (reusable: nullcontext keeps no state)
OFF = contextlib.nullcontext()


def span(tracer: Any, name: str, **attributes: Any):
    """A span named ``name`` as the current one (``routecast.<key>`` attributes, None ones left out)
    with tracing on; :data:`OFF` with it off."""
    if tracer is None:
        return OFF
    return tracer.start_as_current_span(
        name, attributes={f"routecast.{k}": v for k, v in attributes.items() if v is not None})


def tracer_of(provider: Any) -> Any:
    return None if provider is None else provider.get_tracer("routecast.serving")


def otlp_provider() -> Any:
    """A tracer provider exporting by OTLP/HTTP, configured by the standard ``OTEL_*`` variables
    (``OTEL_EXPORTER_OTLP_ENDPOINT``, default http://localhost:4318)."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError("traces need the otel extra: pip install 'routecast[otel]'") from None
    provider = TracerProvider(resource=Resource.create({"service.name": "routecast"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
