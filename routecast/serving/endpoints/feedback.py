"""``POST /v1/feedback {"request_id": ..., "score": 0..1}``: attach an outcome to a logged decision.

Authenticated like every endpoint (the gate). The score is joined to the decision log record of
the request id the chat answer carried (``x-routecast-request-id``); an unknown or already
scored id or a score outside [0, 1] is a 400 and changes nothing. Only the key that made the
request may score it (or an admin key, ``serve --admin-keys FILE``): another key gets a 403 and
the request keeps its one feedback for its owner. Scores that arrive later in a file go through
``routecast feedback import`` instead.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from routecast.data.decision_log import NotYourRequest
from routecast.errors import DataError
from routecast.serving.api_error import ApiError
from routecast.serving.endpoints.common import key_id, read_json, server
from routecast.serving.schemas import FeedbackRequest, validated

router = APIRouter()


@router.post("/v1/feedback")
async def feedback(request: Request):
    state = server(request)
    if state.writer is None:
        raise ApiError(400, "this server keeps no decision log, so feedback cannot be joined to a decision "
                            "(start it with a decision log)", code="feedback_disabled")
    req = validated(FeedbackRequest, await read_json(request))
    caller = key_id(request)
    owners = None if caller in request.app.state.admin_key_ids else {caller}
    try:
        await state.writer.call(state.writer.log.add_feedback, req.request_id, req.score, source="api",
                                where="request body", key_ids=owners)
    except NotYourRequest as exc:
        raise ApiError(403, exc.reason, type="permission_error", code="not_your_request") from None
    except DataError as exc:
        raise ApiError(400, exc.reason, code="invalid_feedback") from None
    return {"request_id": req.request_id, "score": req.score, "status": "recorded"}
