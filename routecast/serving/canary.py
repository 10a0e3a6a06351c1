"""Canary rollout (``serve --canary CKPT --canary-share 0.05``): a share of first turns is served
by a candidate checkpoint, the rest by the live one; ``POST /admin/promote`` makes the candidate
live, ``POST /admin/rollback`` ends the canary (both admin only; routecast.serving.endpoints.admin).

Why the draw is a hash of the request id (as exploration's, routecast.serving.exploration): a
logged request id replays its arm exactly and no random state is kept. The arm and its probability
are logged with the decision (``extra["arm"]``, ``extra["arm_propensity"]``), so
``routecast rollout status DECISION_LOG`` (routecast.evaluation.rollout) compares both arms'
quality per dollar from feedback. A conversation stays on the arm of its first turn; a
conversation the server already knew before the canary started stays live.
"""

from __future__ import annotations

from typing import Any

from routecast.serving.chat_request import ChatRequest
from routecast.serving.conversations import ConversationMemory
from routecast.serving.exploration import uniform_for
from routecast.serving.microbatch import MicroBatcher
from routecast.serving.runtime_protocol import ServingRuntime
from routecast.serving.state import ServerState

LIVE, CANARY = "live", "canary"


class Canary:
    """The candidate runtime serving ``share`` of first turns, its batcher and the arm of each
    conversation it has seen (bounded like sticky conversations)."""

    def __init__(self, runtime: ServingRuntime, share: float, *, capacity: int = 100_000):
        self.runtime = runtime
        self.share = share
        self.batcher: MicroBatcher | None = None
        self.arms = ConversationMemory(capacity)

    def draw(self, request_id: str) -> str:
        """The arm of a first turn: the canary when the request id's hash falls under ``share``."""
        return CANARY if uniform_for("canary:" + request_id) < self.share else LIVE

    def describe(self) -> dict[str, Any]:
        return {"id": self.runtime.manifest_sha256, "router_type": self.runtime.router_type,
                "models": list(self.runtime.models), "share": self.share}


def choose_arm(state: ServerState, chat: ChatRequest, conversation: str | None) -> ServerState:
    """``state`` pinned to the arm that serves this routed chat (without a canary: unchanged)."""
    canary = state.canary
    if canary is None:
        return state
    arm = canary.arms.get(conversation) if conversation else None
    if arm is None:
        known_before = conversation is not None and state.conversations.get(conversation) is not None
        arm = LIVE if known_before else canary.draw(chat.request_id)
        if conversation:
            canary.arms.remember(conversation, arm)
    pinned = state.pinned()
    pinned.arm = {"arm": arm, "arm_propensity": canary.share if arm == CANARY else 1.0 - canary.share}
    if arm == CANARY:  # the budget pacer paces the live checkpoint's lam only
        pinned.runtime, pinned.batcher, pinned.pacer = canary.runtime, canary.batcher, None
    return pinned
