"""Plain torch predictors of per-model quality, and their (de)serialisation as named arrays.

Every network here maps a batch of prompts to one logit per candidate model, shape
``(batch, n_models)``; ``sigmoid(logit)`` is the predicted quality. They are ordinary
``nn.Module`` s so the runtime can predict with torch alone: Lightning only *trains* them
(routecast.router.lightning_module), it is never needed to load or run them.

:class:`TorchNetState` (routecast.router.net_state, re-exported here) is the mixin a router holding
one of these networks uses so that ``Router.get_state()/set_state()`` store the weights as plain
numpy arrays (safetensors, no pickle) and rebuild the exact architecture from a small JSON config
on load, with strict key/shape checking. This module imports torch; router modules import it only
inside fit/build code, so the lean runtime (no torch) routes their checkpoints through ``head.onnx``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


# --------------------------------------------------------------------------- losses
def masked_quality_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "bce",
                        weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean loss over the *logged* cells only.

    ``target`` holds NaN where a (prompt, model) outcome was not logged; those cells contribute
    neither to the loss nor to its gradient, so an unlogged cell can hold any value without
    changing training. ``kind`` is ``"bce"`` (soft-label binary cross-entropy on the logits,
    right for 0/1 and fractional scores alike) or ``"mse"`` (squared error of the sigmoid).
    ``weight`` (b, n_models), if given, weighs each logged cell (its inverse logging propensity on
    a traffic log), so the fit is to the whole prompt distribution, not the logging policy's share.
    """
    mask = ~torch.isnan(target)
    safe = torch.where(mask, target, torch.zeros_like(target))
    if kind == "bce":
        cell = F.binary_cross_entropy_with_logits(logits, safe, reduction="none")
    elif kind == "mse":
        cell = (torch.sigmoid(logits) - safe) ** 2
    else:  # pragma: no cover - guarded by the routers' validation
        raise ValueError(f"unknown loss {kind!r}")
    if weight is None:
        weight = mask.to(cell.dtype)
        return (cell * weight).sum() / weight.sum().clamp_min(1.0)
    weight = torch.where(mask, torch.nan_to_num(weight.to(cell.dtype)), torch.zeros_like(cell))
    return (cell * weight).sum() / weight.sum().clamp_min(1e-12)


def weighted_batch_loss(net: nn.Module, batch, kind: str = "bce") -> torch.Tensor:
    """Masked loss of a batch ``(embeddings, cell weights, scores)``: the objective of a quality
    net fitted on a traffic log with inverse-propensity weights (module-level, so ``ddp_spawn``
    can pickle it)."""
    x, weight, target = batch
    return masked_quality_loss(net(x), target, kind, weight)


# ------------------------------------------------------------------------- networks
class QualityMLP(nn.Module):
    """Shared trunk on the sentence embedding, one logit per model.

    One trunk for all models (rather than one regressor per model) because what makes a prompt
    hard is largely shared between models; the final ``Linear(hidden, n_models)`` is the set of
    per-model sigmoid heads.
    """

    def __init__(self, in_dim: int, n_models: int, hidden_dim: int = 256, n_layers: int = 2,
                 dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden_dim), nn.GELU(), nn.Dropout(dropout)]
            width = hidden_dim
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.Linear(width, n_models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.trunk(x))


class MatrixFactorizationNet(nn.Module):
    """RouteLLM's matrix-factorisation scorer, for many models at once.

    ``score(q, j) = w · (P q ⊙ v_j / |v_j|) + b_j``: ``P`` projects the query embedding into a
    small latent space, ``v_j`` is model ``j``'s learned embedding (L2-normalised, as in RouteLLM),
    ``w`` a shared read-out and ``b_j`` a per-model bias (absent in RouteLLM, which only ever
    compares two models; with absolute scores it carries each model's base rate).
    """

    def __init__(self, in_dim: int, n_models: int, dim: int = 128):
        super().__init__()
        self.text_proj = nn.Linear(in_dim, dim, bias=False)
        self.model_emb = nn.Embedding(n_models, dim)
        self.classifier = nn.Linear(dim, 1, bias=False)
        self.model_bias = nn.Parameter(torch.zeros(n_models))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = self.text_proj(x)  # (b, dim)
        models = F.normalize(self.model_emb.weight, p=2, dim=1) * self.classifier.weight  # (m, dim)
        return projected @ models.T + self.model_bias


class IrtNet(nn.Module):
    """``irt``'s network (routecast.router.irt): embedding -> (discrimination a(x) >= 0, difficulty b(x));
    logits ``a . theta_m + c_m - b``.

    The item side is a :class:`QualityMLP` with ``ability_dim + 1`` outputs: the first
    ``ability_dim`` are the discrimination (through softplus), the last the difficulty.
    """

    def __init__(self, in_dim: int, n_models: int, hidden_dim: int = 256, n_layers: int = 1,
                 dropout: float = 0.1, ability_dim: int = 8):
        super().__init__()
        self.items = QualityMLP(in_dim, ability_dim + 1, hidden_dim=hidden_dim, n_layers=n_layers, dropout=dropout)
        self.ability = nn.Parameter(0.1 * torch.randn(n_models, ability_dim))
        self.ability_intercept = nn.Parameter(torch.zeros(n_models))

    def item_parameters(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a (b, d) >= 0, difficulty (b,)) of a batch of prompt embeddings."""
        out = self.items(x)
        return F.softplus(out[:, :-1]), out[:, -1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.item_parameters(x)
        return a @ self.ability.T + self.ability_intercept - b[:, None]


class TransformerQualityNet(nn.Module):
    """A BERT-family encoder, mean pooling over real tokens, one logit per model.

    The analogue of RouteLLM's BERT router for many models: the whole encoder is fine-tuned, so
    the representation itself learns what makes a prompt hard for which model.

    ``model_keys`` adds RouterDC's learnable model embeddings (``model_keys``, (n_models, hidden);
    routecast.router.dual_contrastive). Without ``quality_head`` (RouterDC's loss alone) the
    logit of model ``j`` is ``key_scale_j * cos(pooled, k_j) + key_bias_j``, a per-model
    logistic calibration of the similarity fitted after training.
    """

    def __init__(self, bert_config: dict[str, Any], n_models: int, model_keys: bool = False,
                 quality_head: bool = True):
        super().__init__()
        from transformers import BertConfig, BertModel

        config = BertConfig.from_dict(dict(bert_config))
        self.encoder = BertModel(config, add_pooling_layer=False)
        if quality_head:
            self.head = nn.Linear(config.hidden_size, n_models)
        if model_keys or not quality_head:
            self.model_keys = nn.Parameter(torch.randn(n_models, config.hidden_size) * 0.78)  # RouterDC's init
        if not quality_head:
            self.key_scale = nn.Parameter(torch.ones(n_models))
            self.key_bias = nn.Parameter(torch.zeros(n_models))

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean of the last hidden states over real tokens: (b, hidden)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(input_ids, attention_mask)
        if hasattr(self, "head"):
            return self.head(pooled)
        cos = F.normalize(pooled, p=2, dim=1) @ F.normalize(self.model_keys, p=2, dim=1).T
        return self.key_scale * cos + self.key_bias


# ------------------------------------------------------------------ serialisation
# (TorchNetState lives in routecast.router.net_state: no torch import, the lean runtime loads
# mlp/mf/irt checkpoints without torch)


@torch.no_grad()
def predict_logits(net: nn.Module, X: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Logits of ``net`` on embeddings ``X`` (n, dim) in eval mode, float64 (n, m)."""
    net.eval()
    X = np.ascontiguousarray(X, dtype=np.float32)
    out = [net(torch.from_numpy(X[i:i + batch_size])) for i in range(0, max(len(X), 1), batch_size)]
    return torch.cat(out).double().numpy()
