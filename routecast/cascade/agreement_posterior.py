"""Agreement among any number of answers as evidence: the chance each answer is the right one.

Two models that agree are more likely right than either alone - but how much more depends on
who they are: two strong models agreeing settle a question, two weak ones agreeing on a wrong
answer is common enough. This module turns the answers obtained so far into, for every called
model, the posterior probability that *its* answer is the true one, under a one-coin latent-truth
model (Dawid and Skene, 1979, with one reliability per model):

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

#: chance that two wrong answers to one question are the same (a modelling assumption, see above)
COLLISION = 0.1
_CLIP = 1e-4


def agreement_evidence(prior_logit: np.ndarray, same_answer: np.ndarray, has_answer: np.ndarray,
                       called: np.ndarray, collision: float = COLLISION) -> np.ndarray:
    """(k,) shift in the probability, from the answers of the ``called`` models, that each called
    model's answer is right (posterior minus ex-ante; 0 for a model not called, without an answer,
    or alone). A probability, not log-odds: bounded, so one confident agreement cannot swamp the
    posterior's other evidence.

    ``prior_logit`` (k,) ex-ante log-odds of each model; ``same_answer`` (k, k) equal final answers;
    ``has_answer`` (k,) bool; ``called`` (k,) bool.
    """
    acc = np.clip(1.0 / (1.0 + np.exp(-np.asarray(prior_logit, dtype=np.float64))), _CLIP, 1 - _CLIP)
    voters = np.flatnonzero(np.asarray(called, bool) & np.asarray(has_answer, bool))
    out = np.zeros(len(acc))
    if len(voters) < 2:
        return out
    wrong = np.log((1 - acc[voters]) * collision)
    right = np.log(acc[voters])
    groups: list[list[int]] = []
    for a in range(len(voters)):
        for g in groups:
            if same_answer[voters[a], voters[g[0]]]:
                g.append(a)
                break
        else:
            groups.append([a])
    other = wrong.sum()  # the truth is an answer no one gave
    weights = [np.log(collision) + other + (right[g] - wrong[g]).sum() for g in groups]
    log_norm = np.logaddexp.reduce(np.array(weights + [other]))
    for g, w in zip(groups, weights):
        p = float(np.clip(np.exp(w - log_norm), _CLIP, 1 - _CLIP))
        for a in g:
            j = voters[a]
            out[j] = p - acc[j]
    return out
