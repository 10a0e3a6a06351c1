"""A routing-trained static encoder: the distilled token table fine-tuned on the masked quality loss.

Why: the distilled ``static`` encoder keeps MiniLM's *semantic* neighbourhoods, which is not what
routing needs: two prompts are "close" for a router when the same models succeed on them. Here the
token table itself is trained end to end, through the encoder's exact computation (sum of token
vectors -> L2 normalisation), together with a throw-away quality head that predicts every model's
score (masked loss on the logged cells only, :func:`~routecast.router.quality_net.masked_quality_loss`).
The head is dropped; what is kept is an ordinary static encoder folder (``config.json`` +
``model.safetensors`` + ``tokenizer.json``), so routing still runs on the numpy runtime of
:class:`~routecast.router.encoders.static.StaticEncoder` (a table lookup, ~0.2 ms a prompt) and every
router's checkpoint ships the table as it ships the distilled one.

Parameterisation (:class:`StaticTableNet`), chosen so a small log cannot wreck the table:

* token ``t``'s vector is ``exp(s_t) * e_t + |e_t| * d_t``: ``e_t`` the distilled row (frozen), ``s_t``
  a learned log-weight (a learned SIF: a routing-relevant token such as "def" can gain weight) and
  ``d_t`` a learned offset measured in units of the row's own norm. SIF leaves frequent tokens'
  rows ~100x shorter than rare ones'; a plain Adam step on the table would erase that, one measured
  in the row's norm keeps every row's relative step alike. Both start at 0: epoch 0 is the distilled
  encoder exactly.
* tokens the distilled table does not know (zero rows: specials, ``[unusedN]``) are dropped before
  the sum, as the runtime drops them, so they stay unknown;
* ``dim`` below the base dimension adds a projection, initialised to the first ``dim`` PCA
  components of the distilled table (its columns are PCA-ordered) and folded into the table at
  export (a sum of projected rows is the projection of the sum).

Training is Lightning's, through :func:`routecast.router.lightning_module.train_module` (DDP, prompt
sharding, early stopping on an inner validation share of the *given* log, best epoch kept).
:class:`StaticEncoderTrainer` is the estimator: hyperparameters in ``__init__``, ``fit(log)`` on the
train split only, ``save(folder)`` writes the encoder folder.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from routecast.core.estimator import Estimator
from routecast.router.distributed import LightningFit
from routecast.errors import ConfigError, DataError
from routecast.router.encoders.static import DEFAULT_MAX_CHARS, FORMAT, StaticEncoder
from routecast.jsonable import finite_or_none

#: the throw-away head the table is trained through; "joint" sums the linear and the mlp head's losses
#: (two heads on the same vectors), so the table suits a linear read-out and a non-linear one alike
HEADS = ("linear", "mlp", "joint")
#: what of the table is trained: every row's weight and offset, or only the per-token weights (a learned SIF)
TABLES = ("full", "weights")
#: prompts tokenised at once while building the training tensors
_TOKENISE_BATCH = 2048


class StaticTableNet(nn.Module):
    """The static encoder as a torch module (trainable table) plus a per-model quality head.

    ``forward(ids)``: ``ids`` (b, L) int64 token ids, padded with ``vocab_size`` (any id >= the
    vocabulary, or of an unknown token, is skipped); returns (b, n_models) logits, or with
    ``head="joint"`` (b, 2 * n_models): the linear head's logits, then the mlp head's (train it
    against the target repeated twice, :func:`head_target`, and the masked loss is their mean).
    """

    def __init__(self, vocab_size: int, base_dim: int, n_models: int, dim: int | None = None,
                 head: str = "linear", hidden_dim: int = 256, dropout: float = 0.1):
        super().__init__()
        dim = int(base_dim if dim is None else dim)
        self.vocab_size, self.base_dim, self.dim = int(vocab_size), int(base_dim), dim
        self.register_buffer("base", torch.zeros(self.vocab_size, self.base_dim))
        self.register_buffer("row_norm", torch.zeros(self.vocab_size))
        self.register_buffer("empty_base", torch.zeros(self.base_dim))
        self.log_weight = nn.Parameter(torch.zeros(self.vocab_size))
        self.delta = nn.Parameter(torch.zeros(self.vocab_size, self.base_dim))
        self.proj = nn.Parameter(torch.eye(self.base_dim)[:, :dim].clone()) if dim != self.base_dim else None
        if head not in HEADS:
            raise ConfigError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        mlp = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, n_models))
        self.head = mlp if head == "mlp" else nn.Linear(dim, n_models)
        self.head_mlp = mlp if head == "joint" else None

    def set_base(self, table: np.ndarray, empty: np.ndarray) -> None:
        """Load the distilled table (float16/32 (vocab, base_dim)) and its empty-input vector."""
        with torch.no_grad():
            base = torch.from_numpy(np.asarray(table, dtype=np.float32))
            self.base.copy_(base)
            self.row_norm.copy_(base.norm(dim=1))
            self.empty_base.copy_(torch.from_numpy(np.asarray(empty, dtype=np.float32)))

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.proj is None else x @ self.proj

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """(b, L) padded ids -> (b, dim) L2-normalised vectors: the numpy runtime's computation."""
        # token_tensor pads at the end to the longest prompt of the whole log (~18x the mean on
        # llmrouter_9models); cutting to this batch's longest row skips only padding, same sums
        width = int((ids < self.vocab_size).sum(dim=1).max()) if ids.numel() else 0
        ids = ids[:, :max(width, 1)]
        known = ids < self.vocab_size
        safe = torch.where(known, ids, torch.zeros_like(ids))
        known = known & (self.row_norm[safe] > 0)
        mask = known.to(self.base.dtype)
        weights = torch.exp(self.log_weight[safe]) * mask
        sums = F.embedding_bag(safe, self.base, mode="sum", per_sample_weights=weights)
        sums = sums + F.embedding_bag(safe, self.delta, mode="sum", per_sample_weights=self.row_norm[safe] * mask)
        sums = self._project(sums)
        empty = self._project(self.empty_base[None, :]).expand_as(sums)
        sums = torch.where(known.any(dim=1, keepdim=True), sums, empty)
        return F.normalize(sums, p=2, dim=1, eps=1e-12)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.encode_ids(ids)
        if self.head_mlp is None:
            return self.head(x)
        return torch.cat([self.head(x), self.head_mlp(x)], dim=1)

    @torch.no_grad()
    def export_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(float16 (vocab, dim) table, float32 (dim,) empty vector) for the numpy runtime.

        One global scale (the output is L2-normalised, so it changes nothing) puts the largest entry
        at 1, well inside float16's range; a known row that would round to all zeros gets a tiny
        first entry, since a zero row means "unknown token" at run time.
        """
        rows = torch.exp(self.log_weight)[:, None] * self.base + self.row_norm[:, None] * self.delta
        table = self._project(rows).double()
        table[self.row_norm == 0] = 0.0
        scale = float(table.abs().max()) or 1.0
        table16 = (table / scale).float().numpy().astype(np.float16)
        lost = (self.row_norm.numpy() > 0) & ~np.any(table16 != 0, axis=1)
        table16[lost, 0] = np.float16(6e-5)
        empty = self._project(self.empty_base[None, :])[0].float().numpy()
        return table16, empty


class StaticEncoderTrainer(LightningFit, Estimator):
    """Fine-tune a static encoder's token table to predict per-model quality (scikit-learn style).

    ``base`` is the spec of a static encoder (``static``, ``static:dim=N`` or ``static:/folder``);
    ``fit(log)`` trains on ``log`` (pass the TRAIN split only: the routers evaluated with the result
    must never have seen its validation or test prompts), holding out ``val_fraction`` of it for
    early stopping; ``encoder_`` is then the trained :class:`StaticEncoder` and ``save(folder)``
    writes it. Where it trains (``accelerator``/``devices``/``num_nodes``/``strategy``) is not a
    hyperparameter: :meth:`set_trainer_options` before ``fit`` (Lightning's Trainer gets them).
    """

    def __init__(self, *, base: str = "static", dim: int | None = None, head: str = "linear", loss: str = "bce",
                 table: str = "weights", hidden_dim: int = 256, dropout: float = 0.1, lr: float = 3e-3,
                 table_lr: float = 1e-2, weight_decay: float = 0.0, max_epochs: int = 30, batch_size: int = 128,
                 patience: int = 3, val_fraction: float = 0.1, seed: int = 0):
        # head and loss together: the throw-away head's kind and the masked loss it is trained with
        self.base = base
        self.dim = dim
        self.head = head
        self.loss = loss
        self.table = table
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.lr = lr
        self.table_lr = table_lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.patience = patience
        self.val_fraction = val_fraction
        self.seed = seed

    fitted_attribute = "encoder_"
    fit_hint = "fit(train_log)"

    def _describe(self) -> str:
        return "StaticEncoderTrainer"

    # ----------------------------------------------------------------- checks
    def _check(self) -> None:
        from routecast.router.mlp import check_loss

        if self.head not in HEADS:
            raise ConfigError(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        check_loss(self.loss)
        if self.table not in TABLES:
            raise ConfigError(f"table must be one of {', '.join(TABLES)}, got {self.table!r}")
        for name in ("max_epochs", "batch_size", "hidden_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if self.dim is not None and (isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 2):
            raise ConfigError(f"dim must be an integer >= 2 (or None: the base encoder's), got {self.dim!r}")
        for name in ("lr", "table_lr"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= float(self.val_fraction) < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")

    def base_encoder(self) -> StaticEncoder:
        """The static encoder to start from; any other kind is refused in one line."""
        from routecast.router.encoders import get_encoder, parse_spec

        kind = parse_spec(self.base)[0]
        if kind != "static":
            raise ConfigError(f"base encoder {self.base!r} is not a static encoder: the routing-trained encoder "
                              "fine-tunes a static token table; give static, static:dim=N or static:/path/to/folder")
        encoder = get_encoder(self.base)
        if not isinstance(encoder, StaticEncoder):  # pragma: no cover - get_encoder's static kind
            raise ConfigError(f"base encoder {self.base!r} did not build a static encoder")
        return encoder

    # -------------------------------------------------------------------- fit
    def fit(self, log, callbacks: Sequence[Any] | None = None) -> "StaticEncoderTrainer":
        """Train the table on ``log`` (the train split); ``callbacks`` and the trainer options
        (:meth:`set_trainer_options`; default one CPU process) go to the Lightning Trainer."""
        self._check()
        scores = np.asarray(getattr(log, "scores", np.zeros((0, 0))), dtype=np.float32)
        source = getattr(log, "source", None)
        if getattr(log, "n_prompts", 0) < 2 or scores.size == 0:
            raise DataError(f"the routing-trained static encoder needs at least 2 prompts with outcomes; "
                            f"the log has {getattr(log, 'n_prompts', 0)}", path=source)
        if not np.isfinite(scores).any():
            raise DataError("the routing-trained static encoder needs logged scores; every score is missing",
                            path=source, column="score")
        from torch.utils.data import TensorDataset

        from routecast.router.inner_split import split_validation
        from routecast.router.lightning_module import QualityNetModule, train_module

        base = self.base_encoder()
        ids = token_tensor(base, [str(p) for p in log.prompts])
        train_idx, val_idx = split_validation(log.n_prompts, float(self.val_fraction), int(self.seed))
        target = head_target(torch.from_numpy(scores), self.head)
        base_rate = np.nanmean(np.where(np.isfinite(scores[train_idx]), scores[train_idx], np.nan), axis=0)
        config = {"vocab_size": int(base._stored.shape[0]), "base_dim": int(base.dim), "n_models": int(log.n_models),
                  "dim": None if self.dim is None else int(self.dim), "head": self.head,
                  "hidden_dim": int(self.hidden_dim), "dropout": float(self.dropout)}
        if self.dim is not None and self.dim > base.dim:
            raise ConfigError(f"dim {self.dim} exceeds the base encoder's dimension {base.dim} ({self.base})")
        with torch.random.fork_rng(devices=[]):  # seed locally, leave the global RNG alone
            torch.manual_seed(int(self.seed))
            net = StaticTableNet(**config)
            net.set_base(base._stored, base._stored_empty)
            _init_bias(net, base_rate)
            if self.table == "weights":
                net.delta.requires_grad_(False)
            train = TensorDataset(ids[train_idx], target[train_idx])
            val = TensorDataset(ids[val_idx], target[val_idx]) if len(val_idx) else None
            initial = _loss_of(net, val or train, self.loss)
            table_params = {"log_weight": float(self.table_lr), "delta": float(self.table_lr)}
            module = QualityNetModule(net, lr=float(self.lr), weight_decay=float(self.weight_decay), loss=self.loss,
                                      lr_overrides=table_params)
            report = train_module(module, train, val, batch_size=int(self.batch_size),
                                  val_batch_size=max(len(val_idx), 1), seed=int(self.seed),
                                  max_epochs=int(self.max_epochs), patience=int(self.patience),
                                  callbacks=callbacks, trainer_options=self.trainer_options())
        net.eval()
        self.net_ = net
        self.net_config_ = config
        self.epochs_ = report.epochs
        self.best_epoch_ = report.best_epoch
        self.best_val_loss_ = report.best_val_loss
        self.initial_val_loss_ = initial
        self.final_val_loss_ = _loss_of(net, val or train, self.loss)
        self.n_train_ = int(len(train_idx))
        self.n_val_ = int(len(val_idx))
        self.models_ = tuple(log.models)
        table, empty = net.export_table()
        self.encoder_ = StaticEncoder(self._config(base, table), table, empty, base._tokenizer_json,
                                      max_chars=base.max_chars, spec="static")
        return self

    def _config(self, base: StaticEncoder, table: np.ndarray) -> dict[str, Any]:
        params = self.get_params()
        return {"format": FORMAT, "dim": int(table.shape[1]), "vocab_size": int(table.shape[0]),
                "n_distilled": base.config.get("n_distilled"), "dtype": "float16",
                "pooling": "sum of routing-trained token vectors, L2-normalised",
                "routing_trained": {"base_spec": base.spec, "base_weights_sha256": base.weights_sha256,
                                    "params": params, "models": list(self.models_), "n_train": self.n_train_,
                                    "n_val": self.n_val_, "epochs": self.epochs_, "best_epoch": self.best_epoch_,
                                    "initial_val_loss": finite_or_none(self.initial_val_loss_),
                                    "best_val_loss": finite_or_none(self.best_val_loss_)}}

    # ------------------------------------------------------------------ output
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """The torch module's vectors (float32, before the float16 export): for checking the export."""
        self._check_fitted()
        with torch.no_grad():
            return self.net_.encode_ids(token_tensor(self.encoder_, list(texts))).numpy()

    def save(self, folder: str | os.PathLike, *, extra: dict[str, Any] | None = None) -> StaticEncoder:
        """Write the encoder folder (atomically) and return it loaded as ``static:/abs/folder``.

        ``extra`` (JSON) is added to ``config.json``'s ``routing_trained`` entry, e.g. the split the
        table was trained on, so a user can check it matches the routers' train split.
        """
        self._check_fitted()
        config = dict(self.encoder_.config)
        if extra:
            config["routing_trained"] = {**config["routing_trained"], **extra}
        folder = Path(folder).expanduser()
        StaticEncoder(config, self.encoder_._stored, self.encoder_._stored_empty, self.encoder_._tokenizer_json,
                      max_chars=self.encoder_.max_chars).save(folder)
        spec = f"static:{folder.resolve()}"
        if self.encoder_.max_chars != DEFAULT_MAX_CHARS:
            spec += f",max_chars={self.encoder_.max_chars or 'none'}"
        return StaticEncoder.load(folder, max_chars=self.encoder_.max_chars, spec=spec)



def token_tensor(encoder: StaticEncoder, texts: Sequence[str]) -> torch.Tensor:
    """(n, L) int64 ids of the encoder's known tokens per text (cut at ``max_chars`` as at run time),
    padded with the vocabulary size; L is the longest text's count (at least 1)."""
    texts = encoder.truncate([str(t) for t in texts])
    n_vocab = len(encoder._known)
    rows: list[np.ndarray] = []
    for start in range(0, len(texts), _TOKENISE_BATCH):
        for ids in encoder.token_ids(texts[start:start + _TOKENISE_BATCH]):
            arr = np.asarray(ids, dtype=np.int64)
            arr = arr[arr < n_vocab]
            rows.append(arr[encoder._known[arr]])
    width = max([1, *(len(r) for r in rows)])
    out = np.full((len(rows), width), n_vocab, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return torch.from_numpy(out)


def _init_bias(net: StaticTableNet, base_rate: np.ndarray) -> None:
    """Start each model's logit at its base rate on the train share: the table then learns differences."""
    rate = np.clip(np.nan_to_num(base_rate, nan=0.5), 1e-3, 1 - 1e-3)
    for head in (net.head, net.head_mlp):
        if head is not None:
            last = head if isinstance(head, nn.Linear) else head[-1]
            with torch.no_grad():
                last.bias.copy_(torch.from_numpy(np.log(rate / (1 - rate))).float())


def head_target(scores: torch.Tensor, head: str) -> torch.Tensor:
    """The training target for ``head``: the (n, n_models) scores, repeated side by side for the
    joint head (whose logits are the linear head's, then the mlp head's)."""
    return torch.cat([scores, scores], dim=1) if head == "joint" else scores


@torch.no_grad()
def _loss_of(net: StaticTableNet, rows, kind: str) -> float:
    from routecast.router.quality_net import masked_quality_loss

    was_training = net.training
    net.eval()
    ids, target = rows.tensors
    total, weight = 0.0, 0.0
    for start in range(0, len(ids), 1024):
        t = target[start:start + 1024]
        n = float((~torch.isnan(t)).sum())
        if n:
            total += float(masked_quality_loss(net(ids[start:start + 1024]), t, kind)) * n
            weight += n
    net.train(was_training)
    return total / weight if weight else float("nan")


def split_fingerprint(log) -> str:
    """sha256 of a log's prompts, models and scores: names the train split a table was trained on."""
    digest = hashlib.sha256()
    for prompt in log.prompts:
        digest.update(str(prompt).encode("utf-8", "surrogatepass") + b"\0")
    digest.update("\0".join(log.models).encode())
    digest.update(np.ascontiguousarray(np.asarray(log.scores, dtype=np.float64)).tobytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------- from a data source
#: options of the ``trained-static[:dim=N,head=linear|mlp|joint,epochs=N]`` spec (resolved by pipeline.prepare)
SPEC_OPTIONS = {"dim": int, "head": str, "table": str, "epochs": int}


def spec_params(spec: str) -> dict[str, Any]:
    """``"trained-static:dim=128,head=mlp"`` -> trainer keyword arguments (checked)."""
    from routecast.router.encoders import parse_spec

    kind, _, opts = parse_spec(spec)
    if kind != "trained-static":
        raise ConfigError(f"encoder spec {spec!r} is not a trained-static spec")
    params: dict[str, Any] = {}
    for key, value in opts.items():
        if SPEC_OPTIONS[key] is int:
            try:
                params["max_epochs" if key == "epochs" else key] = int(value)
            except ValueError:
                raise ConfigError(f"encoder spec {spec!r}: {key} must be an integer, got {value!r}") from None
        else:
            params[key] = value
    StaticEncoderTrainer(**params)._check()
    return params


def resolve_trained_static(spec: str, train_log, *, seed: int = 0, progress: bool = False) -> str:
    """The ``static:/folder`` spec of the table trained on ``train_log`` with ``spec``'s options.

    Why: ``--encoder trained-static`` must train on exactly the split the routers train on, never on
    validation or test prompts; resolving it where the split is made (``pipeline.prepare``) makes
    that automatic. The folder lives in the cache dir, keyed by the train split's fingerprint, the
    options and the seed, so a second run on the same split loads it instead of training again.
    """
    from routecast.router.embedding_cache import default_cache_dir
    from routecast.router.encoders.build_lock import build_lock

    params = {"seed": int(seed), **spec_params(spec)}
    trainer = StaticEncoderTrainer(**params)
    base = trainer.base_encoder()
    key = hashlib.sha256(repr((split_fingerprint(train_log), sorted(params.items()), base.weights_sha256))
                         .encode()).hexdigest()[:20]
    folder = default_cache_dir() / "encoders" / f"trained-static-{key}"
    if not (folder / "model.safetensors").is_file():
        with build_lock(folder):
            if not (folder / "model.safetensors").is_file():
                trainer.fit(train_log)
                trainer.save(folder, extra={"train_fingerprint": split_fingerprint(train_log),
                                            "requested_spec": spec})
    return f"static:{folder}"
