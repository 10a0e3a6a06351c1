"""``irt``: an item-response-theory router (IRT-Router / multidimensional IRT).

Each candidate model m has an ability vector ``theta_m`` (and an ability intercept ``c_m``); each
prompt x has a discrimination vector ``a(x) >= 0`` and a difficulty ``b(x)``, both predicted from
its embedding by a small network, so unseen prompts get them too::

    P(model m answers x well) = sigmoid(a(x) . theta_m + c_m - b(x))

Why IRT rather than one free head per model (``mlp``): what makes a prompt hard is mostly shared
by all models (one difficulty), and which models it separates is a low-dimensional direction
``a(x)``; with few outcomes per model this structure is a strong, interpretable prior, and the
abilities are readable (:meth:`IrtRouter.model_abilities`). Trained with the shared Lightning
loop on the masked loss (unlogged cells ignored), early-stopped on a seeded validation share of
the training prompts, exactly as ``mlp`` (it is an ``mlp`` with another network, and predicts
``sigmoid(logit)`` the same way).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routecast.router.encoders.default import DEFAULT_ENCODER
from routecast.router.mlp import MlpRouter
from routecast.router.net_state import require_torch
from routecast.core.registry import register_router
from routecast.router.search_space import Int
from routecast.core.tags import PolicyTags


@register_router("irt")
class IrtRouter(MlpRouter):
    """Multidimensional IRT: per-model abilities, per-prompt difficulty and discrimination."""

    tags = PolicyTags(needs_torch=True, quick_params={"max_epochs": 5, "hidden_dim": 32})
    search_space = {**MlpRouter.search_space, "ability_dim": Int(1, 32, log=True), "n_layers": Int(0, 2)}

    def __init__(self, *, ability_dim: int = 8, hidden_dim: int = 256, n_layers: int = 1,
                 dropout: float = 0.1, lr: float = 2e-3, weight_decay: float = 1e-4, max_epochs: int = 100,
                 batch_size: int = 256, patience: int = 5, val_fraction: float = 0.1, loss: str = "bce",
                 encoder: str = DEFAULT_ENCODER, seed: int = 0):
        super().__init__(hidden_dim=hidden_dim, n_layers=n_layers, dropout=dropout, lr=lr,
                         weight_decay=weight_decay, max_epochs=max_epochs, batch_size=batch_size,
                         patience=patience, val_fraction=val_fraction, loss=loss, encoder=encoder, seed=seed)
        self.ability_dim = ability_dim

    def _build_net(self, config: dict[str, Any]):
        # the network lives with the other torch networks: this module imports no torch (lean runtime)
        from routecast.router.quality_net import IrtNet

        config = dict(config)
        config.setdefault("ability_dim", int(self.ability_dim))
        return IrtNet(**config)

    def _fit(self, log, X: np.ndarray) -> None:
        super()._fit(log, X)
        # the architecture is rebuilt from net_config_ alone on load
        self.net_config_ = {**self.net_config_, "ability_dim": int(self.ability_dim)}

    def model_abilities(self, X: np.ndarray) -> np.ndarray:
        """(m,) each model's mean ability logit ``a(x) . theta_m + c_m`` over prompts ``X``
        (the difficulty, shared by every model, left out): the models' ability order there."""
        self._check_fitted()
        torch = require_torch("irt.model_abilities")
        self.net_.eval()
        with torch.no_grad():
            a, _ = self.net_.item_parameters(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)))
            return (a @ self.net_.ability.T + self.net_.ability_intercept).mean(dim=0).double().numpy()

    def difficulty(self, X: np.ndarray) -> np.ndarray:
        """(n,) predicted difficulty ``b(x)`` of each prompt embedding."""
        self._check_fitted()
        torch = require_torch("irt.difficulty")
        self.net_.eval()
        with torch.no_grad():
            _, b = self.net_.item_parameters(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)))
            return b.double().numpy()
