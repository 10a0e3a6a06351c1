"""Sticky routing: the model each conversation was first routed to, per app, bounded.

Why: successive turns of one conversation used to bounce between models (a follow-up such as
"ok, and?" routes very differently from the question before it), so a user saw the answering
model's style and knowledge change mid-conversation. A conversation id (the chat request's
``user`` field or an ``x-routecast-conversation`` header) now keeps later turns on the model its
first turn was routed to, unless switching gains more than ``sticky_margin`` of predicted quality
on the new turn (:func:`sticky_choice`). With a decision log the first turn is also found there,
so stickiness survives a restart.
"""

from __future__ import annotations

from collections import OrderedDict


class ConversationMemory:
    """conversation id -> the model of its first routed turn, least recently used forgotten first."""

    def __init__(self, capacity: int = 100_000):
        self.capacity = capacity
        self._models: OrderedDict[str, str] = OrderedDict()

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
        while len(self._models) > self.capacity:
            self._models.popitem(last=False)

    def __len__(self) -> int:
        return len(self._models)


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
