"""OpenTelemetry spans (routecast.serving.tracing, ``serve --traces``): off by default (no tracer, a
shared null context per would-be span); on, one span per request with its id, the decision and
each backend call inside it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from routecast.errors import ConfigError
from routecast.serving.app import create_app
from routecast.serving.tracing import OFF, span
from tests._support.serving import backends_for, make_checkpoint

sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra is not installed")


def test_spans_name_the_request_its_decision_and_backend_call(tmp_path, backend):
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(make_checkpoint(tmp_path / "ck"), backends=backends_for({"*": backend}),
                     tracer_provider=provider)
    with TestClient(app) as client:
        chat = client.post("/v1/chat/completions", json={"model": "router",
                                                         "messages": [{"role": "user", "content": "hi"}]})
        route = client.post("/v1/route", json={"prompt": "hello"})
    spans = {s.name: s for s in exporter.get_finished_spans()}
    request = [s for s in exporter.get_finished_spans() if s.name == "routecast.chat"][0]
    assert request.attributes["routecast.request_id"] == chat.headers["x-routecast-request-id"]
    call = spans["routecast.backend_call"]
    assert call.attributes["routecast.model"] == chat.headers["x-routecast-model"]
    assert call.parent.span_id == request.context.span_id  # the call belongs to its request
    decides = [s for s in exporter.get_finished_spans() if s.name == "routecast.decide"]
    assert len(decides) == 2 and decides[0].parent.span_id == request.context.span_id
    assert spans["routecast.route"].attributes["routecast.request_id"] == route.json()["request_id"]


def test_off_by_default_and_traces_need_the_extra(tmp_path):
    app = create_app(make_checkpoint(tmp_path / "ck"))
    state = app.state.server
    assert state.tracer is None and span(state.tracer, "routecast.chat", request_id="x") is OFF
    try:
        import opentelemetry.exporter.otlp.proto.http  # noqa: F401
    except ImportError:  # this environment has the SDK but not the exporter: --traces says what to install
        with pytest.raises(ConfigError, match=r"pip install 'routecast\[otel\]'"):
            create_app(make_checkpoint(tmp_path / "ck2"), {"traces": True})
    else:
        assert create_app(make_checkpoint(tmp_path / "ck2"), {"traces": True}).state.server.tracer is not None
