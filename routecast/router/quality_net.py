"""Plain torch predictors of per-model quality, and their (de)serialisation as named arrays.

Every network here maps a batch of prompts to one logit per candidate model, shape
``(batch, n_models)``; ``sigmoid(logit)`` is the predicted quality. They are ordinary
``nn.Module`` s so the runtime can predict with torch alone: Lightning only *trains* them
(routecast.router.lightning_module), it is never needed to load or run them.

:class:`TorchNetState` is the mixin a router holding one of these networks uses so that
``Router.get_state()/set_state()`` store the weights as plain numpy arrays (safetensors, no
pickle) and rebuild the exact architecture from a small JSON config on load, with strict
key/shape checking.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from routecast.errors import CheckpointError


# --------------------------------------------------------------------------- losses
def masked_quality_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """Mean loss over the *logged* cells only.

    ``target`` holds NaN where a (prompt, model) outcome was not logged; those cells contribute
    neither to the loss nor to its gradient, so an unlogged cell can hold any value without
    changing training. ``kind`` is ``"bce"`` (soft-label binary cross-entropy on the logits,
    right for 0/1 and fractional scores alike) or ``"mse"`` (squared error of the sigmoid).
    """
    mask = ~torch.isnan(target)
    safe = torch.where(mask, target, torch.zeros_like(target))
    if kind == "bce":
        cell = F.binary_cross_entropy_with_logits(logits, safe, reduction="none")
    elif kind == "mse":
        cell = (torch.sigmoid(logits) - safe) ** 2
    else:  # pragma: no cover - guarded by the routers' validation
        raise ValueError(f"unknown loss {kind!r}")
    weight = mask.to(cell.dtype)
    return (cell * weight).sum() / weight.sum().clamp_min(1.0)


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


class TransformerQualityNet(nn.Module):
    """A BERT-family encoder, mean pooling over real tokens, one logit per model.

    The analogue of RouteLLM's BERT router for many models: the whole encoder is fine-tuned, so
    the representation itself learns what makes a prompt hard for which model.
    """

    def __init__(self, bert_config: dict[str, Any], n_models: int):
        super().__init__()
        from transformers import BertConfig, BertModel

        config = BertConfig.from_dict(dict(bert_config))
        self.encoder = BertModel(config, add_pooling_layer=False)
        self.head = nn.Linear(config.hidden_size, n_models)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        return self.head(pooled)


# ------------------------------------------------------------------ serialisation
class TorchNetState:
    """Router mixin: keep a torch network in ``net_`` and serialise it as named arrays.

    The router sets ``net_config_`` (JSON: the keyword arguments that rebuild the network) next
    to ``net_``; weights travel as ``net.<state_dict key>`` arrays. On load the network is
    rebuilt from ``net_config_`` and filled with ``load_state_dict(strict=True)``, so a
    checkpoint whose arrays do not match the architecture is refused, never half-loaded.
    """

    _net_prefix = "net."

    def _build_net(self, config: dict[str, Any]) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def _state_skip(self) -> set[str]:
        return {"net_"}

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {self._net_prefix + key: value.detach().cpu().numpy().copy()
                for key, value in self.net_.state_dict().items()}

    def _extra_array_names(self) -> set[str]:
        config = getattr(self, "net_config_", None)
        if config is None:
            return set()
        with torch.device("meta"):  # names only: no memory, no initialisation cost
            skeleton = self._build_net(config)
        return {self._net_prefix + key for key in skeleton.state_dict()}

    def _load_extra_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        config = getattr(self, "net_config_", None)
        if config is None:
            raise CheckpointError(f"{type(self).__name__}: checkpoint has no net_config_")
        net = self._build_net(config)
        state = {key[len(self._net_prefix):]: torch.from_numpy(np.array(value, copy=True))
                 for key, value in arrays.items()}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{type(self).__name__}: stored weights do not match the "
                                  f"architecture in net_config_: {exc}") from None
        net.eval()
        self.net_ = net


@torch.no_grad()
def predict_logits(net: nn.Module, X: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Logits of ``net`` on embeddings ``X`` (n, dim) in eval mode, float64 (n, m)."""
    net.eval()
    X = np.ascontiguousarray(X, dtype=np.float32)
    out = [net(torch.from_numpy(X[i:i + batch_size])) for i in range(0, max(len(X), 1), batch_size)]
    return torch.cat(out).double().numpy()
