"""Ex-post answer scorer: is this logged response good enough to return?

FrugalGPT's key observation is that judging an *answer* is easier than predicting, from the
question alone, whether a model will answer well: a hedging, truncated or number-less answer to
a maths question is visibly weak. The scorer reads ``response [SEP] prompt`` through a sentence
encoder plus cheap format features (log response length, and how the final answer is stated:
:func:`routecast.cascade.agreement.answer_format` - boxed, a ``####`` marker, a choice letter, only a
number, only text, or nothing usable) and fits a scikit-learn head on the logged scores:

* ``head="logistic"``: probability that the score is >= ``good_threshold`` (binary metrics);
* ``head="ridge"``: the score itself, clipped to [0, 1] (graded metrics such as judge scores).

The default encoder is the bundled MiniLM (:data:`SCORER_ENCODER`), not the router's cheap
static table: a scorer runs once per *answer*, after a model call that costs far more than an
embedding, and what it must read (hedging, a missing final answer, an answer that does not fit
the question) is what the static table cannot see. Embeddings go through
:func:`routecast.router.embedding_cache.embed`, so repeated fits (cross-fitting, chain search,
benchmarks) encode each (prompt, response) text once. Tests pass ``encoder="hashing:..."``.

``shared=True`` fits one head over all models with a one-hot of the model name appended (more
data per head); ``shared=False`` fits one head per model. A model whose training labels are all
one class gets a constant predictor equal to that class, so tiny logs never crash the fit.

Texts are cut before encoding to the *last* ``max_chars * (1 - prompt_share)`` characters of the
response, then ``[SEP]``, then the first ``max_chars * prompt_share`` characters of the prompt.
The response comes first because MiniLM reads only 256 tokens (~1,000 characters) and cuts the
rest: with the prompt first, a long question pushed the response's final answer - the part that
matters most - out of the window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from routecast.cascade.agreement import format_onehot
from routecast.core.estimator import Estimator
from routecast.core.registry import register_scorer
from routecast.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    from routecast.data.outcome_log import OutcomeLog

SEP = " [SEP] "
#: the scorer's default encoder: a real sentence encoder (see the module docstring for why)
SCORER_ENCODER = "minilm"


def require_responses(log: "OutcomeLog", models: Sequence[str], *, why: str) -> None:
    """Raise a DataError naming the first model in ``models`` without a response on some prompt."""
    if log.responses is None:
        raise DataError(f"{why} needs response texts, but the log has no 'response' column "
                        f"(models needing them: {', '.join(models)})", path=log.source, column="response")
    for name in models:
        column = log.responses[:, log.model_index(name)]
        missing = np.array([not isinstance(r, str) for r in column])
        if missing.any():
            first = int(np.flatnonzero(missing)[0])
            raise DataError(
                f"{why} needs the response of model {name!r} on every prompt, but {int(missing.sum())} "
                f"of {len(column)} are missing (first: prompt_id {log.prompt_ids[first]!r}); drop those "
                "prompts or use ex-ante deferral", path=log.source, row=first + 1, column="response")


@register_scorer("answer-scorer")
class AnswerScorer(Estimator):
    """Predicts the quality of a (prompt, response) pair produced by a named model.

    Hyperparameters (what a checkpoint stores to rebuild the scorer before ``set_state``) are
    ``__init__``'s arguments, read by the kernel's estimator contract."""

    fitted_attribute = "heads_"

    def __init__(self, encoder: str = SCORER_ENCODER, head: str = "logistic", shared: bool = True,
                 good_threshold: float = 0.5, C: float = 1.0, alpha: float = 1.0, max_chars: int = 1000,
                 prompt_share: float = 0.25):
        self.encoder = encoder
        self.head = head
        self.shared = shared
        self.good_threshold = good_threshold
        self.C = C
        self.alpha = alpha
        self.max_chars = max_chars
        self.prompt_share = prompt_share

    def _describe(self) -> str:
        return "AnswerScorer"

    # ----------------------------------------------------------------- fit
    def fit(self, log: "OutcomeLog", models: Sequence[str] | None = None) -> "AnswerScorer":
        """Learn from every logged (prompt, response, score) of ``models`` (default: all)."""
        if self.head not in ("logistic", "ridge"):
            raise ConfigError(f"AnswerScorer head must be 'logistic' or 'ridge', got {self.head!r}")
        if not 0.0 <= float(self.prompt_share) < 1.0:
            raise ConfigError(f"AnswerScorer prompt_share must be in [0, 1), got {self.prompt_share!r}")
        models = list(log.models if models is None else models)
        require_responses(log, models, why="the ex-post answer scorer")
        self.models_ = tuple(models)
        self.encoder_ = self._build_encoder()
        prompts, responses, names, targets = [], [], [], []
        for name in models:
            j = log.model_index(name)
            logged = ~np.isnan(log.scores[:, j])
            prompts.extend(log.prompts[logged])
            responses.extend(log.responses[logged, j])
            names.extend([name] * int(logged.sum()))
            targets.extend(log.scores[logged, j])
        if not targets:
            raise DataError("the ex-post answer scorer has no logged scores to learn from", path=log.source,
                            column="score")
        X = self._features(prompts, responses, names)
        y = np.asarray(targets, dtype=np.float64)
        names_arr = np.asarray(names, dtype=object)
        self.heads_: dict[str, object] = {}
        groups = {"*": np.ones(len(y), dtype=bool)} if self.shared else {m: names_arr == m for m in models}
        for key, mask in groups.items():
            self.heads_[key] = self._fit_head(X[mask], y[mask])
        return self

    def _fit_head(self, X: np.ndarray, y: np.ndarray) -> "LinearHead":
        if self.head == "logistic":
            labels = (y >= self.good_threshold).astype(int)
            if labels.min() == labels.max():
                return LinearHead.constant(float(labels[0]), X.shape[1])
            from sklearn.linear_model import LogisticRegression

            fitted = LogisticRegression(C=self.C, max_iter=2000).fit(X, labels)
            return LinearHead(fitted.coef_[0], float(fitted.intercept_[0]), logistic=True)
        from sklearn.linear_model import Ridge

        fitted = Ridge(alpha=self.alpha).fit(X, y)
        return LinearHead(np.asarray(fitted.coef_).reshape(-1), float(fitted.intercept_), logistic=False)

    # -------------------------------------------------------------- state
    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Learned state as JSON + arrays (for a checkpoint's safetensors file; no pickle)."""
        self._check_fitted()
        keys = sorted(self.heads_)
        meta = {"models": list(self.models_), "heads": keys,
                "logistic": [bool(self.heads_[k].logistic) for k in keys]}
        arrays = {}
        for i, key in enumerate(keys):
            arrays[f"head{i}.coef"] = np.asarray(self.heads_[key].coef, dtype=np.float64)
            arrays[f"head{i}.intercept"] = np.asarray([self.heads_[key].intercept], dtype=np.float64)
        return meta, arrays

    def set_state(self, meta: dict, arrays: dict[str, np.ndarray], *, encoder=None) -> "AnswerScorer":
        """Restore ``get_state``; ``encoder``: the encoder shipped in the checkpoint (the cascade
        router passes it, so loading never rebuilds a model from outside the folder); None builds
        it from the spec."""
        self.models_ = tuple(meta["models"])
        self.encoder_ = self._build_encoder() if encoder is None else encoder
        self.heads_ = {key: LinearHead(arrays[f"head{i}.coef"], float(arrays[f"head{i}.intercept"][0]),
                                       logistic=bool(meta["logistic"][i]))
                       for i, key in enumerate(meta["heads"])}
        return self

    # ------------------------------------------------------------- predict
    def predict(self, prompts: Sequence[str], responses: Sequence[str], models: Sequence[str] | str) -> np.ndarray:
        """(k,) predicted quality (probability of a good answer for the logistic head) in [0, 1]."""
        self._check_fitted()
        if isinstance(models, str):
            models = [models] * len(prompts)
        unknown = sorted(set(models) - set(self.models_))
        if unknown:
            raise ConfigError(f"the answer scorer was not trained on model(s) {', '.join(unknown)}; "
                              f"it knows {', '.join(self.models_)}")
        bad = [i for i, r in enumerate(responses) if not isinstance(r, str)]
        if bad:
            raise DataError(f"the ex-post answer scorer needs a response text; model {models[bad[0]]!r} "
                            f"has none for prompt #{bad[0] + 1}", row=bad[0] + 1, column="response")
        X = self._features(list(prompts), list(responses), list(models))
        out = np.empty(len(prompts))
        names = np.asarray(models, dtype=object)
        keys = {"*": np.ones(len(out), dtype=bool)} if self.shared else {m: names == m for m in set(models)}
        for key, mask in keys.items():
            if mask.any():
                out[mask] = self._predict_head(self.heads_[key], X[mask])
        return np.clip(out, 0.0, 1.0)

    def score_log(self, log: "OutcomeLog", models: Sequence[str] | None = None) -> np.ndarray:
        """(n, len(models)) predicted quality of every logged response (DataError if one is missing)."""
        models = list(self.models_ if models is None else models)
        require_responses(log, models, why="the ex-post answer scorer")
        cols = [self.predict(list(log.prompts), list(log.responses[:, log.model_index(m)]), m) for m in models]
        return np.stack(cols, axis=1) if cols else np.zeros((log.n_prompts, 0))

    @staticmethod
    def _predict_head(head: "LinearHead", X: np.ndarray) -> np.ndarray:
        return head.predict(X)

    # ------------------------------------------------------------ features
    def _build_encoder(self):
        """The one place the encoder is built (fit and set_state): predict never builds one."""
        from routecast.router.encoders import get_encoder

        return get_encoder(self.encoder)

    def texts(self, prompts: Sequence[str], responses: Sequence[str]) -> list[str]:
        """What the encoder reads: the response's tail, [SEP], the prompt's head (module docstring)."""
        n_prompt = int(round(self.max_chars * float(self.prompt_share)))
        n_response = max(1, int(self.max_chars) - n_prompt)
        return [str(r)[-n_response:] + SEP + (str(p)[:n_prompt] if n_prompt else "")
                for p, r in zip(prompts, responses)]

    def _features(self, prompts: list, responses: list, models: list) -> np.ndarray:
        from routecast.router.embedding_cache import embed

        texts = self.texts(prompts, responses)
        emb = embed(self.encoder_, texts) if texts else np.zeros((0, self.encoder_.dim), dtype=np.float32)
        lengths = np.array([len(r) for r in responses], dtype=np.float64)
        extra = np.concatenate([(np.log1p(lengths) / 10.0)[:, None], format_onehot(responses)], axis=1)
        parts = [np.asarray(emb, dtype=np.float64), extra]
        if self.shared:
            onehot = np.zeros((len(models), len(self.models_)))
            index = {m: i for i, m in enumerate(self.models_)}
            for row, name in enumerate(models):
                onehot[row, index[name]] = 1.0
            parts.append(onehot)
        return np.concatenate(parts, axis=1)


class LinearHead:
    """A fitted linear head in numpy: ``X @ coef + intercept``, through a sigmoid when
    ``logistic`` (the probability of a good answer). Converted from scikit-learn right after
    fitting so a scorer saves as plain arrays and predicts the same after loading."""

    def __init__(self, coef: np.ndarray, intercept: float, *, logistic: bool):
        self.coef = np.asarray(coef, dtype=np.float64).reshape(-1)
        self.intercept = float(intercept)
        self.logistic = bool(logistic)

    @classmethod
    def constant(cls, value: float, dim: int) -> "LinearHead":
        """A head that predicts ``value`` everywhere (training labels of one class only)."""
        return cls(np.zeros(dim), float(value), logistic=False)

    def predict(self, X: np.ndarray) -> np.ndarray:
        z = np.asarray(X, dtype=np.float64) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z)) if self.logistic else z
