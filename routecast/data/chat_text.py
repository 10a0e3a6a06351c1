"""What a router reads from a chat conversation: the one policy, shared by training and serving.

A router learns from single prompts, so a conversation in OpenAI's chat format has to become one
text, and that text must be built the same way when a log is loaded for training and when the
server routes a live ``/v1/chat/completions`` request; otherwise the router sees one kind of
input in training and another in production. The policy:

1. the **last user turn** (its text; OpenAI content parts are joined with newlines, non-text
   parts such as images are skipped), then
2. the **system prompt** (every ``system`` / ``developer`` message, in order), after a blank line,
3. optionally (``earlier_turns=N``, default 0) the N user/assistant turns before the last user
   turn, newest first, each after a blank line,
4. cut to ``max_chars`` characters (default :data:`DEFAULT_MAX_CHARS`): the user turn keeps its
   head, and each later part only gets what the parts before it leave.

``system_prompt=False`` leaves the system prompt out (it is still used when it is all there is).
The server exposes these options as ``route_system_prompt``, ``route_earlier_turns`` and
``route_context_chars`` (routecast.serving.server_config); training reads logs with the defaults,
so a server that changes them routes on text its router was not trained on.

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


def routing_text(messages: Sequence[Any], *, max_chars: int = DEFAULT_MAX_CHARS, system_prompt: bool = True,
                 earlier_turns: int = 0) -> str:
    """The text a router reads for a conversation (see the module docstring for the policy).

    Raises :class:`NoRoutingText` when ``messages`` is not a list of message objects or holds
    neither a user turn with text nor a system prompt.
    """
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    if earlier_turns < 0:
        raise ValueError(f"earlier_turns must be >= 0, got {earlier_turns}")
    if earlier_turns or not system_prompt:
        return _routing_text_with_options(messages, max_chars, system_prompt, earlier_turns)
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


def _routing_text_with_options(messages: Sequence[Any], max_chars: int, system_prompt: bool,
                               earlier_turns: int) -> str:
    """The policy with earlier turns and/or without the system prompt: parts in order, each cut to
    the room the parts before it leave."""
    base = routing_text(messages, max_chars=max_chars)  # validates; the default policy's text
    turns = [i for i, m in enumerate(messages) if m.get("role") in ("user", "assistant")
             and message_text(m).strip()]
    last_user = max((i for i in turns if messages[i].get("role") == "user"), default=None)
    if last_user is None:
        return base  # a system-only chat routes on its system prompt whatever the options
    parts = [message_text(messages[last_user]).strip()]
    if system_prompt:
        parts += [t for t in (message_text(m).strip() for m in messages if m.get("role") in SYSTEM_ROLES) if t]
    earlier = [i for i in turns if i < last_user][::-1][:earlier_turns]
    parts += [message_text(messages[i]).strip() for i in earlier]
    out, used = [], 0
    for part in parts:
        room = max_chars - used - (len(_SEPARATOR) if out else 0)
        if room <= 0:
            break
        out.append(part[:room])
        used += len(out[-1]) + (len(_SEPARATOR) if len(out) > 1 else 0)
    return _SEPARATOR.join(out)
