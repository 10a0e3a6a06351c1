"""Request bodies of the server, strictly typed: a string or a bool where a number belongs
(``lam: "1e3"``, ``lam: true``) is a 400, not silently converted."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from routecast.serving.api_error import ApiError


class RouteKnobs(BaseModel):
    """The routing knobs a request may set (at most one; none: the server's default operating point)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    lam: float | None = None
    budget: float | None = None
    strong_share: float | None = None
    target_quality: float | None = None
    operating_point: str | None = None


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: a score in [0, 1] for a logged request."""

    model_config = ConfigDict(extra="forbid", strict=True)
    request_id: str
    score: float


class ReloadRequest(BaseModel):
    """``POST /admin/reload``: the checkpoint folder to serve next (and its pinned manifest sha256)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    checkpoint: str
    expect_sha256: str | None = None


class RouteRequest(RouteKnobs):
    prompt: str | None = None
    prompts: list[str] | None = None


def validated(schema: type[BaseModel], body: Any, *, where: str = ""):
    """``body`` as ``schema`` or a 400 naming every bad field (``where`` prefixes the field names)."""
    if not isinstance(body, dict):
        raise ApiError(400, f"{where or 'the body'} must be a JSON object", code="invalid_request")
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, [where] * bool(where) + list(e['loc']))) or 'body'}: {e['msg']}"
                             for e in exc.errors())
        raise ApiError(400, f"invalid request: {problems}", code="invalid_request") from None


def check_prompts(texts: list[str], field: str = "prompts") -> None:
    """Empty lists and empty (or blank) prompts are refused: there is nothing to route on."""
    if not texts:
        raise ApiError(400, f"'{field}' is empty: give at least one prompt", code="invalid_request")
    for i, text in enumerate(texts):
        if not text.strip():
            where = field if field == "prompt" else f"{field}[{i}]"
            raise ApiError(400, f"'{where}' is empty: there is nothing to route on", code="invalid_request")
