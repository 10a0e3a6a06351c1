"""Posterior quality of every model given the answers a cascade has obtained so far.

Cascade routing (:mod:`routecast.cascade.cascade_router`) needs, at every step, an estimate of
each model's quality on *this* prompt. Before any call it has only a router's ex-ante
prediction. After each call it also has evidence from the answers:

* the ex-post answer scorer's rating of each answer (prompt + response, a real encoder);
* agreement between the final answers (:func:`routecast.cascade.answers.final_answer`) of the
  models called so far, and their embedding agreement (:mod:`routecast.cascade.smoothie`);
* answer format: whether a final answer can be extracted and how it is stated
  (:data:`routecast.cascade.agreement.ANSWER_FORMATS`: boxed, ``####`` marker, choice letter, only
  a number, only text), the response's length;
* for numeric answers, whether the worked solution checks out (:mod:`routecast.cascade.math_checks`:
  recomputed arithmetic steps, a final answer the solution computed, a whole number, hedging, the
  question's numbers used).

:func:`state_features` turns (ex-ante prediction, evidence of the called models) into one
feature row per model, and :class:`PosteriorQuality` - one logistic regression per model,
trained on soft labels (the logged score) over every reachable state of every training prompt -
maps it to the posterior quality. The evidence of a model enters only once it has been called,
so the same features are computed online (one answer at a time) and offline (logged answers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from routecast.cascade.agreement_posterior import agreement_evidence
from routecast.data.answers import ANSWER_SOURCES, read_answer

FEATURES = ("prior", "called", "called*prior", "called*scorer", "called*has_response", "called*has_answer",
            "called*log_length", "called*has_others", "called*answer_agreement", "called*embedding_agreement",
            "has_others", "others_mean_scorer", "others_agree", "called*agreement_evidence")

#: per pair (this model, pool model l), read only once both are called: equal extractable final
#: answers, different ones, or at least one answer missing. One weight per partner lets the
#: posterior learn that agreeing with a strong partner means more than agreeing with a weak one -
#: the evidence behind "accept a mid model's answer when a second mid model agrees".
PAIR_KINDS = ("agree", "disagree", "one_missing")


#: per model, read once it is called: how its final answer is stated (one-hot over the rules of
#: :func:`routecast.data.answers.read_answer`; "none" is the absence of ``has_answer`` already)
FORMAT_KINDS = ANSWER_SOURCES[1:]


def feature_names(k: int) -> list[str]:
    """Names of the state features for a pool of ``k`` models (the base ones, the answer format,
    per pair, then the math checks)."""
    return (list(FEATURES) + [f"called*format={f}" for f in FORMAT_KINDS]
            + [f"pair_{kind}[{l}]" for kind in PAIR_KINDS for l in range(k)]
            + [f"called*{m}" for m in check_features()])


def check_features() -> tuple[str, ...]:
    """Names of the per-answer checks: the maths checks, then the code checks."""
    from routecast.cascade.code_checks import CODE_FEATURES
    from routecast.cascade.math_checks import MATH_FEATURES

    return MATH_FEATURES + CODE_FEATURES

_EPS = 0.01


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass
class AnswerFacts:
    """Evidence from the answers of ``k`` models on ``n`` prompts (NaN/False where not known).

    ``scorer`` (n, k) logit of the answer scorer's rating; ``has_response``, ``has_answer`` (n, k)
    bool; ``log_length`` (n, k); ``same_answer`` (n, k, k) bool, equal extractable final answers;
    ``similarity`` (n, k, k) cosine similarity of the response embeddings; ``answer_format``
    (n, k, len(FORMAT_KINDS)) one-hot of how each final answer is stated (all 0: none); ``math``
    (n, k, len(check_features())) :func:`routecast.cascade.math_checks.math_evidence` and
    :func:`routecast.cascade.code_checks.code_evidence` of each answer.
    """

    scorer: np.ndarray
    has_response: np.ndarray
    has_answer: np.ndarray
    log_length: np.ndarray
    same_answer: np.ndarray
    similarity: np.ndarray
    answer_format: np.ndarray | None = None
    math: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.answer_format is None:
            self.answer_format = np.zeros(self.scorer.shape + (len(FORMAT_KINDS),))
        if self.math is None:
            self.math = np.zeros(self.scorer.shape + (len(check_features()),))

    @classmethod
    def empty(cls, n: int, k: int) -> "AnswerFacts":
        return cls(np.zeros((n, k)), np.zeros((n, k), bool), np.zeros((n, k), bool), np.zeros((n, k)),
                   np.zeros((n, k, k), bool), np.zeros((n, k, k)), np.zeros((n, k, len(FORMAT_KINDS))))

    def row(self, i: int) -> "AnswerFacts":
        return AnswerFacts(self.scorer[i:i + 1], self.has_response[i:i + 1], self.has_answer[i:i + 1],
                           self.log_length[i:i + 1], self.same_answer[i:i + 1], self.similarity[i:i + 1],
                           self.answer_format[i:i + 1], self.math[i:i + 1])


def compute_facts(prompts: Sequence[str], responses: np.ndarray, models: Sequence[str], *, scorer=None,
                  encoder=None, max_chars: int = 1000, answer_format: str | None = "auto") -> AnswerFacts:
    """Evidence from ``responses`` (n, k) object array (str or None) of ``models`` on ``prompts``.

    ``scorer`` (a fitted AnswerScorer, or None: no ratings) and ``encoder`` (None: no embedding
    agreement) are the ones the cascade router was trained with. Used for logged responses and,
    with n = 1 and one column filled, for a live answer. ``answer_format``: the log's declared format
    (:func:`routecast.data.answers.read_answer`).
    """
    from routecast.cascade.code_checks import code_evidence
    from routecast.cascade.math_checks import math_evidence
    from routecast.cascade.smoothie import embed_responses, similarity_matrix

    responses = np.asarray(responses, dtype=object).reshape(len(prompts), len(models))
    n, k = responses.shape
    facts = AnswerFacts.empty(n, k)
    present = np.vectorize(lambda r: isinstance(r, str), otypes=[bool])(responses) if responses.size else \
        np.zeros((n, k), bool)
    facts.has_response[:] = present
    answers = np.full((n, k), None, dtype=object)
    for (i, j), r in np.ndenumerate(responses):
        if present[i, j]:
            read = read_answer(r, answer_format)
            answers[i, j] = read.value
            facts.log_length[i, j] = np.log1p(len(r)) / 10.0
            if read.source in FORMAT_KINDS:
                facts.answer_format[i, j, FORMAT_KINDS.index(read.source)] = 1.0
            facts.math[i, j] = np.concatenate([math_evidence(r, prompts[i], read=read),
                                               code_evidence(r, prompts[i])])
    facts.has_answer[:] = answers != None  # noqa: E711 - elementwise
    for a in range(k):
        for b in range(k):
            facts.same_answer[:, a, b] = [x is not None and x == y for x, y in zip(answers[:, a], answers[:, b])]
    if scorer is not None:
        facts.scorer[:] = rate(scorer, prompts, responses, models)
    if encoder is not None and n:
        emb = embed_responses(encoder, list(responses.reshape(-1)), max_chars=max_chars)
        facts.similarity[:] = similarity_matrix(emb.reshape(n, k, -1))
    return facts


def rate(scorer, prompts: Sequence[str], responses: np.ndarray, models: Sequence[str]) -> np.ndarray:
    """(n, k) logit of the answer scorer's rating of every present response (0 where none)."""
    responses = np.asarray(responses, dtype=object).reshape(len(prompts), len(models))
    out = np.zeros(responses.shape)
    for j, name in enumerate(models):
        rows = [i for i in range(len(prompts)) if isinstance(responses[i, j], str)]
        if rows:
            out[rows, j] = logit(scorer.predict([prompts[i] for i in rows], list(responses[rows, j]), name))
    return out


def state_features(prior_logit: np.ndarray, facts: AnswerFacts, called: np.ndarray) -> np.ndarray:
    """(k, len(feature_names(k))) features of every model for one prompt and one called set.

    ``prior_logit`` (k,); ``facts`` for this prompt (n = 1); ``called`` (k,) bool. Only the
    evidence of called models is read.
    """
    c = np.asarray(called, dtype=bool)
    cf = c.astype(np.float64)
    k = c.size
    not_self = ~np.eye(k, dtype=bool)
    has_resp = facts.has_response[0] & c
    others = c[None, :] & not_self  # others[j, l]: l is called and l != j
    n_others = others.sum(axis=1).astype(np.float64)
    has_others = (n_others > 0).astype(np.float64)
    safe = np.maximum(n_others, 1.0)
    agree = (facts.same_answer[0] & others).sum(axis=1) / safe
    emb_agree = np.where(others, facts.similarity[0], 0.0).sum(axis=1) / safe
    rated = others & has_resp[None, :]
    mean_scorer = np.where(rated, facts.scorer[0][None, :], 0.0).sum(axis=1) / np.maximum(rated.sum(axis=1), 1)
    # agreement among the other called models: share of their ordered pairs with equal final answers
    pairs = facts.same_answer[0] & c[None, :] & c[:, None] & not_self
    own = np.where(c, 2 * pairs.sum(axis=1), 0)
    others_agree = np.where(n_others >= 2, (pairs.sum() - own) / np.maximum(n_others * (n_others - 1), 1), 0.0)
    prior = np.asarray(prior_logit, dtype=np.float64)
    # the latent-truth posterior of each called answer given all called answers (agreement_posterior)
    support = agreement_evidence(prior, facts.same_answer[0], facts.has_answer[0], c)
    base = np.stack([
        prior, cf, cf * prior, cf * np.where(has_resp, facts.scorer[0], 0.0), has_resp.astype(np.float64),
        cf * facts.has_answer[0], cf * facts.log_length[0], cf * has_others, cf * agree, cf * emb_agree,
        has_others, mean_scorer, others_agree, cf * support,
    ], axis=1)
    both = c[:, None] & others  # both[j, l]: j and l are called, l != j
    answered = facts.has_answer[0]
    both_answered = both & answered[:, None] & answered[None, :]
    same = both_answered & facts.same_answer[0]
    pair = np.concatenate([same, both_answered & ~same, both & ~both_answered], axis=1)
    formats = cf[:, None] * facts.answer_format[0]
    maths = cf[:, None] * facts.math[0]
    return np.concatenate([base, formats, pair.astype(np.float64), maths], axis=1)


class PosteriorQuality:
    """One logistic regression per model: state features -> P(good answer) (soft labels)."""

    def __init__(self, C: float = 1.0):
        self.C = C

    def fit(self, features: np.ndarray, targets: np.ndarray) -> "PosteriorQuality":
        """``features`` (rows, k, F) and ``targets`` (rows, k) in [0, 1] (the logged scores)."""
        from sklearn.linear_model import LogisticRegression

        rows, k, f = features.shape
        self.coef_ = np.zeros((k, f))
        self.intercept_ = np.zeros(k)
        for j in range(k):
            X, y = features[:, j, :], np.clip(targets[:, j], 0.0, 1.0)
            mean = float(y.mean())
            if mean <= 0.0 or mean >= 1.0:  # one class only: a constant
                self.intercept_[j] = float(logit(mean))
                continue
            # a soft label y is a positive example of weight y and a negative one of weight 1 - y
            Xd = np.concatenate([X, X])
            yd = np.concatenate([np.ones(rows), np.zeros(rows)])
            wd = np.concatenate([y, 1.0 - y])
            keep = wd > 0
            model = LogisticRegression(C=self.C, max_iter=1000).fit(Xd[keep], yd[keep], sample_weight=wd[keep])
            self.coef_[j] = model.coef_[0]
            self.intercept_[j] = float(model.intercept_[0])
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(..., k) posterior quality from (..., k, F) features."""
        z = np.einsum("...jf,jf->...j", features, self.coef_) + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))


def calibration(predicted: np.ndarray, target: np.ndarray, n_bins: int = 10) -> dict:
    """How well predicted success probabilities match the logged scores (soft labels in [0, 1]).

    The planner's value of calling a model is an expected maximum of these probabilities, so a
    posterior that is sharp but wrong buys calls it should not (or stops too early). Returns the
    Brier score, the expected calibration error over ``n_bins`` equal-width bins (weighted by
    count), the mean prediction and mean target, and per bin ``(mean predicted, mean target,
    count)`` - a reliability table.
    """
    p = np.clip(np.asarray(predicted, dtype=np.float64).reshape(-1), 0.0, 1.0)
    y = np.clip(np.asarray(target, dtype=np.float64).reshape(-1), 0.0, 1.0)
    keep = np.isfinite(p) & np.isfinite(y)
    p, y = p[keep], y[keep]
    if p.size == 0:
        return {"n": 0, "brier": float("nan"), "ece": float("nan"), "mean_predicted": float("nan"),
                "mean_target": float("nan"), "bins": []}
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        inside = which == b
        if inside.any():
            mp, my = float(p[inside].mean()), float(y[inside].mean())
            bins.append((mp, my, int(inside.sum())))
            ece += inside.mean() * abs(mp - my)
    return {"n": int(p.size), "brier": float(np.mean((p - y) ** 2)), "ece": float(ece),
            "mean_predicted": float(p.mean()), "mean_target": float(y.mean()), "bins": bins}
