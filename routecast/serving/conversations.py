"""Sticky routing: the model each conversation was first routed to, per app, bounded.

Why: successive turns of one conversation used to bounce between models (a follow-up such as
"ok, and?" routes very differently from the question before it), so a user saw the answering
model's style and knowledge change mid-conversation. A conversation id (the chat request's
``user`` field or an ``x-routecast-conversation`` header) now keeps later turns on the model its
first turn was routed to, unless switching gains more than ``sticky_margin`` of predicted quality
on the new turn (:func:`sticky_choice`). With a decision log the first turn is also found there,
so stickiness survives a restart.

Conversation ids come from clients and are bounded (:func:`conversation_key`): an id longer than
:data:`MAX_ID_CHARS` is replaced by its SHA-256, and the table is bounded in bytes as well as in
entries. (A probe's 150 chats with distinct 900 KB ``user`` values kept 135 MB of server memory
and added 277 MB to the decision log.)
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

#: longest conversation id kept as given; longer ones are kept (and logged) as ``sha256:<hex>``
MAX_ID_CHARS = 256


def conversation_key(raw: str | None) -> str | None:
    """The id a conversation is remembered and logged by: ``raw`` up to :data:`MAX_ID_CHARS`
    characters, else its SHA-256 (the same id always gives the same key, across restarts too)."""
    if raw is None or len(raw) <= MAX_ID_CHARS:
        return raw
    return "sha256:" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


class ConversationMemory:
    """conversation id -> the model of its first routed turn, least recently used forgotten first
    once there are ``capacity`` of them or their ids and models take more than ``max_bytes``."""

    def __init__(self, capacity: int = 100_000, max_bytes: int = 64 << 20):
        self.capacity, self.max_bytes = capacity, max_bytes
        self._models: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0

    def get(self, conversation_id: str) -> str | None:
        model = self._models.get(conversation_id)
        if model is not None:
            self._models.move_to_end(conversation_id)
        return model

    def remember(self, conversation_id: str, model: str) -> None:
        """Record the first model of a conversation (a later call does not replace it)."""
        if conversation_id in self._models:
            self._models.move_to_end(conversation_id)
            return
        self._models[conversation_id] = model
        self._bytes += _size(conversation_id, model)
        while len(self._models) > self.capacity or (self._bytes > self.max_bytes and len(self._models) > 1):
            self._bytes -= _size(*self._models.popitem(last=False))

    def __len__(self) -> int:
        return len(self._models)

    @property
    def size_bytes(self) -> int:
        """What the table is counted as holding (bounded by ``max_bytes``)."""
        return self._bytes


def _size(conversation_id: str, model: str) -> int:
    """Bytes an entry is counted as: its characters plus an allowance for the two str objects."""
    return len(conversation_id) + len(model) + 100


def sticky_choice(decision: dict, first_model: str | None, margin: float | None) -> str:
    """The model for this turn: the conversation's first model unless the decision's choice is
    predicted better than it by more than ``margin`` on this turn (or the first model is gone)."""
    chosen = decision["model"]
    if margin is None or first_model is None or first_model == chosen:
        return chosen
    predicted = decision["predicted_quality"]
    if first_model not in predicted:
        return chosen
    return chosen if predicted[chosen] - predicted[first_model] > margin else first_model
