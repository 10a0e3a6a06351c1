"""What a router reads from a chat conversation: the one policy, shared by training and serving.

A router learns from single prompts, so a conversation in OpenAI's chat format has to become one
text, and that text must be built the same way when a log is loaded for training and when the
server routes a live ``/v1/chat/completions`` request; otherwise the router sees one kind of
input in training and another in production. The policy:

1. the **last user turn** (its text; OpenAI content parts are joined with newlines, non-text
   parts such as images are skipped), then
2. the **system prompt** (every ``system`` / ``developer`` message, in order), after a blank line,
3. cut to ``max_chars`` characters (default :data:`DEFAULT_MAX_CHARS`): the user turn keeps its
   head, and the system prompt only gets what the user turn leaves.

The user turn comes first because it is what the router was trained on and because encoders cut
long inputs from the end. Earlier user and assistant turns are not used: what a query needs is
decided by the question being asked now and the instructions it is asked under. A conversation
with neither a user turn nor a system prompt has nothing to route on and is refused.
"""

from __future__ import annotations

from typing import Any, Sequence

DEFAULT_MAX_CHARS = 4000
SYSTEM_ROLES = ("system", "developer")
_SEPARATOR = "\n\n"


class NoRoutingText(ValueError):
    """A conversation with nothing to route on; callers add the file and line."""


def message_text(message: Any) -> str:
    """The text of one chat message (string content, or the text parts of a content list)."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def routing_text(messages: Sequence[Any], *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The text a router reads for a conversation (see the module docstring for the policy).

    Raises :class:`NoRoutingText` when ``messages`` is not a list of message objects or holds
    neither a user turn with text nor a system prompt.
    """
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    if not isinstance(messages, (list, tuple)) or not all(isinstance(m, dict) for m in messages):
        raise NoRoutingText("'messages' must be a list of message objects")
    users = [message_text(m).strip() for m in messages if m.get("role") == "user"]
    users = [u for u in users if u]
    system = _SEPARATOR.join(t for t in (message_text(m).strip() for m in messages
                                         if m.get("role") in SYSTEM_ROLES) if t)
    if not users and not system:
        raise NoRoutingText("the conversation has no user turn and no system prompt to route on")
    user = users[-1][:max_chars] if users else ""
    if not user:
        return system[:max_chars]
    room = max_chars - len(user) - len(_SEPARATOR)
    if system and room > 0:
        return user + _SEPARATOR + system[:room]
    return user
