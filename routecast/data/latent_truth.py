"""Latent truth from answers alone: which answer is right when nobody scored them (Dawid-Skene).

Cascade routing reads agreement among answers as evidence (:mod:`routecast.cascade.agreement_posterior`)
with reliabilities learnt from scores. A log with responses but no scores has none to learn from;
the classic answer (Dawid and Skene, 1979) is to treat the true answer of each prompt as latent
and fit each model's reliability by EM: models that agree with the consensus more often are
trusted more, and the consensus is weighted by that trust. Here the one-coin form: model ``j``
gives the true answer with probability ``accuracy[j]``, else a wrong one; two wrong answers
coincide with probability ``collision``; the truth may be an answer no model gave.

:func:`truth_posterior` is the shared E-step (also the cascade's agreement evidence);
:func:`dawid_skene` fits the accuracies on a log's answers; :func:`agreement_scores` fills a
log's missing scores with the posterior that each answer is the true one (soft labels, clearly
estimates: they say which answer the models' consensus supports, not which is right).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: chance that two wrong answers to one question are the same (a modelling assumption)
COLLISION = 0.1
_CLIP = 1e-4


def truth_posterior(accuracy: Sequence[float], answers: Sequence[object], collision: float = COLLISION) -> np.ndarray:
    """(m,) probability that each of ``m`` voters' answer is the true one, given all of them.

    ``accuracy`` (m,) each voter's chance of the true answer; ``answers`` (m,) comparable values
    (None: no answer, gets 0). With one voter the result is its accuracy; agreeing voters multiply
    their odds; the truth may also be an answer nobody gave.
    """
    acc = np.clip(np.asarray(accuracy, dtype=np.float64), _CLIP, 1 - _CLIP)
    voters = [a for a in range(len(acc)) if answers[a] is not None]
    out = np.zeros(len(acc))
    if not voters:
        return out
    groups: dict[object, list[int]] = {}
    for a in voters:
        groups.setdefault(answers[a], []).append(a)
    wrong = np.log((1 - acc[voters]) * collision).sum()  # the truth is an answer no one gave
    right = {a: np.log(acc[a]) - np.log((1 - acc[a]) * collision) for a in voters}
    weights = {v: np.log(collision) + wrong + sum(right[a] for a in g) for v, g in groups.items()}
    log_norm = np.logaddexp.reduce(np.array(list(weights.values()) + [wrong]))
    for v, g in groups.items():
        out[g] = np.exp(weights[v] - log_norm)
    return out


@dataclass
class LatentTruth:
    """What :func:`dawid_skene` learnt: ``accuracy`` (k,) per model, ``posterior`` (n, k) the chance
    that each answer is the true one, ``n_iter`` EM iterations run."""

    accuracy: np.ndarray
    posterior: np.ndarray
    n_iter: int


def dawid_skene(answers: np.ndarray, *, collision: float = COLLISION, max_iter: int = 100, tol: float = 1e-6,
                initial: float = 0.7) -> LatentTruth:
    """One-coin Dawid-Skene EM on an (n, k) object array of comparable answers (None: no answer)."""
    answers = np.asarray(answers, dtype=object)
    n, k = answers.shape
    answered = answers != None  # noqa: E711 - elementwise
    accuracy = np.full(k, float(initial))
    posterior = np.zeros((n, k))
    for it in range(1, max_iter + 1):
        posterior = np.stack([truth_posterior(accuracy, list(answers[i]), collision) for i in range(n)]) \
            if n else np.zeros((0, k))
        new = np.where(answered.sum(axis=0) > 0,
                       (posterior * answered).sum(axis=0) / np.maximum(answered.sum(axis=0), 1), accuracy)
        done = float(np.abs(new - accuracy).max()) < tol
        accuracy = new
        if done:
            break
    return LatentTruth(accuracy, posterior, it)


def agreement_scores(log, *, answer_format: str | None = None, collision: float = COLLISION):
    """``log`` with every missing score whose response has a readable answer set to the latent-truth
    posterior of that answer (:func:`dawid_skene` over all models' answers); logged scores kept.
    Returns (new log, the fit). A log without responses is an error naming the column."""
    from routecast.data.answers import declared_format, read_answer
    from routecast.data.outcome_log import OutcomeLog
    from routecast.errors import DataError

    if log.responses is None:
        raise DataError("agreement scores need response texts, but the log has no 'response' column",
                        path=log.source, column="response")
    fmt = answer_format or declared_format(log.meta)
    values = np.array([[read_answer(r, fmt).value for r in row] for row in log.responses], dtype=object)
    fit = dawid_skene(values, collision=collision)
    scores = np.where(np.isnan(log.scores) & (values != None), fit.posterior, log.scores)  # noqa: E711
    return OutcomeLog(log.prompt_ids, log.prompts, log.models, scores, log.costs, log.responses, log.meta,
                      log.source), fit
