"""OpenAI chat-format logs -> routecast's long format.

One JSON object per line, as OpenAI-compatible gateways and most chat apps log them::

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}],
     "model": "gpt-4o-mini", "usage": {"prompt_tokens": 31, "completion_tokens": 120},
     "response": "...", "score": 0.8}

* ``prompt`` <- :func:`routecast.data.chat_text.routing_text` of ``messages`` (the same text the
  server routes on). A trailing assistant message is the answer, not part of the question: it
  becomes the ``response`` when the line has no ``response`` field (nor ``choices``).
* ``tokens_in`` / ``tokens_out`` <- ``usage.prompt_tokens`` / ``usage.completion_tokens``; with a
  price table they give each call's cost (a logged ``cost`` wins).
* ``score`` <- ``score``, else ``feedback``: a number in [0, 1], or a thumbs value
  (``up``/``good``/``positive``/``true`` -> 1, ``down``/``bad``/``negative``/``false`` -> 0).
  A line with neither is "not scored" (NaN).

Every other field rides along as in any long log. A line whose conversation has no user turn and
no system prompt is one :class:`DataError` naming the file, the line and ``messages``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from routecast.data.chat_text import NoRoutingText, routing_text
from routecast.data.formats import ROW
from routecast.errors import DataError

THUMBS = {"up": 1.0, "thumbs_up": 1.0, "good": 1.0, "positive": 1.0, "true": 1.0, "like": 1.0,
          "down": 0.0, "thumbs_down": 0.0, "bad": 0.0, "negative": 0.0, "false": 0.0, "dislike": 0.0}
_CHAT_ONLY = ("messages", "usage", "feedback", "choices")


def is_chat_frame(frame: pd.DataFrame) -> bool:
    return "messages" in frame.columns and "prompt" not in frame.columns


def chat_to_long(frame: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """A frame of chat records -> a frame with routecast's long-format columns."""
    rows = frame[ROW].to_numpy()
    n = len(frame)
    prompts = np.empty(n, dtype=object)
    responses = np.full(n, None, dtype=object)
    t_in = np.full(n, np.nan)
    t_out = np.full(n, np.nan)
    has_response = "response" in frame.columns
    for i, (messages, row) in enumerate(zip(frame["messages"].to_numpy(), rows)):
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict) \
                and messages[-1].get("role") == "assistant":
            answer = messages[-1].get("content")
            responses[i] = answer if isinstance(answer, str) else None
            messages = messages[:-1]
        try:
            prompts[i] = routing_text(messages)
        except NoRoutingText as exc:
            raise DataError(str(exc), path=source, row=int(row), column="messages") from None
    if "choices" in frame.columns:
        for i, (choices, row) in enumerate(zip(frame["choices"].to_numpy(), rows)):
            text = _choice_text(choices)
            if text is not None:
                responses[i] = text
    if "usage" in frame.columns:
        for i, (usage, row) in enumerate(zip(frame["usage"].to_numpy(), rows)):
            if usage is None or (isinstance(usage, float) and np.isnan(usage)):
                continue
            if not isinstance(usage, dict):
                raise DataError(f"usage must be an object, got {type(usage).__name__}", path=source,
                                row=int(row), column="usage")
            t_in[i] = _count(usage.get("prompt_tokens"), source, row, "usage.prompt_tokens")
            t_out[i] = _count(usage.get("completion_tokens"), source, row, "usage.completion_tokens")
    out = frame.drop(columns=[c for c in _CHAT_ONLY if c in frame.columns])
    out["prompt"] = prompts
    if has_response:
        logged = frame["response"].to_numpy(dtype=object)
        out["response"] = np.where(pd.isna(frame["response"]).to_numpy(), responses, logged)
    elif any(r is not None for r in responses):
        out["response"] = responses
    if "tokens_in" not in out.columns and not np.isnan(t_in).all():
        out["tokens_in"] = t_in
    if "tokens_out" not in out.columns and not np.isnan(t_out).all():
        out["tokens_out"] = t_out
    if "score" not in out.columns:
        out["score"] = _feedback_scores(frame, rows, source) if "feedback" in frame.columns else np.nan
    elif "feedback" in frame.columns:
        given = pd.isna(frame["score"]).to_numpy()
        out["score"] = np.where(given, _feedback_scores(frame, rows, source), frame["score"].to_numpy(dtype=object))
    return out


def _choice_text(choices):
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return message["content"]
    return None


def _count(value, source, row, field) -> float:
    if value is None:
        return np.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value > 1e12:
        raise DataError(f"token count must be a number >= 0, got {value!r}"[:200], path=source,
                        row=int(row), column=field)
    return float(value)


def _feedback_scores(frame, rows, source) -> np.ndarray:
    out = np.full(len(frame), np.nan)
    for i, (value, row) in enumerate(zip(frame["feedback"].to_numpy(dtype=object), rows)):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        if isinstance(value, bool):
            out[i] = float(value)
        elif isinstance(value, (int, float)) and 0 <= value <= 1:
            out[i] = float(value)
        elif isinstance(value, str) and value.strip().lower() in THUMBS:
            out[i] = THUMBS[value.strip().lower()]
        elif isinstance(value, str) and not value.strip():
            continue
        else:
            raise DataError(f"feedback must be a number in [0, 1] or one of {sorted(THUMBS)}, got "
                            f"{value!r}"[:300], path=source, row=int(row), column="feedback")
    return out
