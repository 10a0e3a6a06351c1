"""Agreement among any number of answers as evidence: the chance each answer is the right one.

Two models that agree are more likely right than either alone - but how much more depends on
who they are: two strong models agreeing settle a question, two weak ones agreeing on a wrong
answer is common enough. This module turns the answers obtained so far into, for every called
model, the posterior probability that *its* answer is the true one, under a one-coin latent-truth
model (Dawid and Skene, 1979, with one reliability per model; the E-step is
:func:`routecast.data.latent_truth.truth_posterior`, which also fits logs without scores):

* each called model ``l`` answers the truth with probability ``acc_l`` - its ex-ante predicted
  quality *on this prompt* (the router's prediction: reliability per prompt, not one number per
  model), else a wrong answer; two wrong answers coincide with probability ``collision``;
* the truth is one of the observed answers or something no one said.

With one answer the posterior is ``acc_j``; agreeing answers multiply their odds, disagreeing ones
share the mass. :func:`agreement_evidence` returns the shift this gives each called model's
answer (posterior minus ex-ante probability), which
:mod:`routecast.cascade.posterior` reads as one feature whose weight it learns per log - so the
fixed ``collision`` is a modelling assumption the weight rescales, not a tuned number.
"""

from __future__ import annotations

import numpy as np

from routecast.data.latent_truth import COLLISION, truth_posterior


def agreement_evidence(prior_logit: np.ndarray, same_answer: np.ndarray, has_answer: np.ndarray,
                       called: np.ndarray, collision: float = COLLISION) -> np.ndarray:
    """(k,) shift in the probability, from the answers of the ``called`` models, that each called
    model's answer is right (posterior minus ex-ante; 0 for a model not called, without an answer,
    or alone). A probability, not log-odds: bounded, so one confident agreement cannot swamp the
    posterior's other evidence.

    ``prior_logit`` (k,) ex-ante log-odds of each model; ``same_answer`` (k, k) equal final answers;
    ``has_answer`` (k,) bool; ``called`` (k,) bool.
    """
    acc = 1.0 / (1.0 + np.exp(-np.asarray(prior_logit, dtype=np.float64)))
    voters = np.flatnonzero(np.asarray(called, bool) & np.asarray(has_answer, bool))
    out = np.zeros(len(acc))
    if len(voters) < 2:
        return out
    # answer labels from the equality matrix: each voter takes the label of the first equal voter
    labels = [next(b for b in voters if same_answer[a, b] or a == b) for a in voters]
    out[voters] = truth_posterior(acc[voters], labels, collision) - acc[voters]
    return out
