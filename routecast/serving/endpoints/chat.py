"""``POST /v1/chat/completions``, OpenAI-compatible.

``"model": "router"`` (or ``"auto"``) routes on the conversation, ``"router:NAME"`` routes at the
stored operating point NAME; any other known model name bypasses routing. Routing knobs come from
the model name, ``x-routecast-*`` headers or the ``routecast`` body field (routecast.serving.knobs);
unknown ones are a 400 and nothing routecast reads is forwarded. The request is otherwise
forwarded unchanged except for ``model`` (OpenAI's extra fields pass through); SSE streams are
passed through. Which backend answers, and when another model may be tried, is
:mod:`routecast.serving.proxy`'s job.

What the router reads in a chat is :func:`routecast.data.chat_text.routing_text` - the one policy
training uses too - with the server's ``route_context_chars``, ``route_system_prompt`` and
``route_earlier_turns``: the last user turn, then the system prompt, then (if configured) N
earlier turns; a system-only chat routes on its system prompt.

What the answer says about the decision (transparency): headers ``x-routecast-request-id``,
``-model`` (the model that answered), ``-rank``, ``-predicted-quality``, ``-expected-cost``,
``-operating-point``, ``-lam``, ``-propensity``, ``-sticky`` (1 when the conversation's first model
was kept), ``-fallback`` (when another model answered - also when the decided model has no backend,
served with ``--allow-missing-backends``), ``-budget-note`` (when a budget is above the cost at which
the best quality is already reached, so it routes like that smaller budget) and ``-cost-usd``; a JSON answer's
``usage`` gains ``routecast_cost_usd`` (from the backend's token usage and the price table when
one is configured, else the router's expected cost) and ``routecast_request_id``. A stream is
priced by the same rule from its usage chunk (routecast.serving.stream_usage): the chunk gains the
same two fields, and ``-cost-usd`` is sent only when no usage can change it (no price table).

Routed chats are answered by the loaded policy's call plan
(:meth:`routecast.serving.runtime_protocol.ServingRuntime.answer_chat`): a router's in
:mod:`routecast.serving.chat_plan`, a cascade's in :mod:`routecast.serving.cascade_chat` (several
backend calls per request; what streams is documented there). This endpoint knows no policy type.
"""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Request

from routecast.serving.api_error import ApiError
from routecast.serving.canary import choose_arm
from routecast.serving.chat_plan import answer_with_plan, chat_conversation, named_model_plan
from routecast.serving.chat_request import ChatRequest
from routecast.serving.endpoints.common import budget_holds, key_id, read_json, server, share_id
from routecast.serving.knobs import chat_knobs, router_model
from routecast.serving.tracing import span
from routecast.serving.usage import chat_hold_usd

router = APIRouter()


def new_request_id() -> str:
    return "rc-" + uuid.uuid4().hex


@router.post("/v1/chat/completions")
async def chat(request: Request):
    state = server(request).pinned()  # this request's runtime, whatever a reload swaps in meanwhile
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "expected a JSON object (an OpenAI chat completion request)", code="invalid_request")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ApiError(400, "'messages' must be a non-empty list of message objects", code="invalid_request")
    requested = body.get("model", "router")
    if not isinstance(requested, str):
        raise ApiError(400, "'model' must be a string", code="invalid_request")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false", code="invalid_request")
    routes, point = router_model(requested)
    knobs = chat_knobs(body, request.headers, point)
    caller = key_id(request)
    state.limits.check_budget(caller, hold_usd=chat_hold_usd(state.runtime, None if routes else requested),
                              holds=budget_holds(request))
    state.limits.admit_prompts(caller, 1)
    chat_request = ChatRequest(body=body, messages=messages, knobs=knobs, caller=caller,
                               request_id=new_request_id(), started=time.perf_counter(), stream=stream,
                               headers=request.headers, share=share_id(request))
    with span(state.tracer, "routecast.chat", request_id=chat_request.request_id, model=requested, stream=stream):
        if routes:
            state = choose_arm(state, chat_request, chat_conversation(chat_request))
            response = await state.runtime.answer_chat(state, chat_request)
            response.headers.update(state.knob_headers(knobs))
            return response
        return await answer_with_plan(state, chat_request, named_model_plan(state, requested,
                                                                            chat_request.request_id))
