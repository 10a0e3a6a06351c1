"""``collect --fill``: which missing cells of a traffic log are worth paying for.

A traffic log shows each prompt's answer from one model. Filling every missing (prompt, model)
cell costs as much as a full benchmark sweep; most of those cells would not change a single
routing decision. This module spends a USD budget on the cells whose outcome is most likely to
change one, by value of information (VOI). Two values, for the two kinds of router
(``value=``, ``collect --fill --value``):

* ``prompt`` (default; :func:`choose_cells_by_prompt`): for a router that decides per prompt
  (``linear`` and the other learned routers). A Bayesian ridge belief per model over the prompt
  embedding (:func:`ridge_belief`); a cell is worth the expected integrated decision improvement
  it brings over the log's traffic: how much knowledge-gradient uncertainty it removes at the
  prompts that resemble it where the decision is close. See that function.
* ``group`` (:func:`choose_cells`): for the per-group priors (``cluster-prior``, ``task-prior``),
  value per prompt group, as follows.

The group value:

* Groups are the log's ``benchmark``/``task`` column when it has two values or more (the unit a
  router's decisions differ by), else k-means clusters of the prompt embeddings (the clusters of
  :mod:`routecast.router.cluster_prior`).
* Belief about model j's quality in group g: the ``cluster-prior`` table fitted on the logged
  cells alone (:func:`routecast.router.group_prior.shrunk_group_means`: the group mean shrunk
  towards the model mean with ``strength`` pseudo-observations), with variance
  ``s_j^2 / (n_gj + strength)`` (``s_j^2``: model j's within-group score variance, ``n_gj``: its
  logged cells in g, cells waiting for a score included).
* The decision in group g at trade-off ``lam`` is ``argmax_j q_gj - lam * c_j``. One more
  outcome of (g, j) is worth its knowledge gradient: the expected gain in the best utility after
  the belief moves, ``sd * f(-|u_gj - max_{k != j} u_gk| / sd)`` with ``f(z) = z Phi(z) + phi(z)``
  and ``sd`` the standard deviation of the move. It is 0 when no outcome could change the
  decision and large where the decision is close and the model barely observed (a model never
  logged in a group is the most valuable to see there). As one outcome rarely moves a barely
  observed belief far, a cell is worth the best per-outcome value of r more outcomes
  (``max_r KG_r / r``, the KG(*) of Frazier and Powell). It is averaged over the lams where the
  models' overall utilities switch (every operating point of the cost range AIQ integrates over)
  and weighted by the group's share of the traffic.
* Cells are picked greedily by value per estimated USD (cost per call: the model's mean logged
  cost, or its price-table cost), each pick shrinking its (group, model) variance, so the value
  of a group's next cell falls as its count grows and the budget spreads over groups. Within a
  (group, model), prompts are taken in a seeded random order. The estimated cost of the chosen
  cells never exceeds the budget.

The chosen cells are sent by the collector (:func:`routecast.data.fill_cells.collect_cells`),
which never sends a prompt marked ``do_not_resend`` or a cell the log already holds.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from routecast.errors import ConfigError, DataError
from routecast.router.encoders.default import DEFAULT_ENCODER

#: pseudo-observations of the prior belief (the cluster-prior's shrinkage)
STRENGTH = 2.0
#: most lams the value of a cell is averaged over
N_LAMS = 9
#: batch sizes r of KG(*): a cell is worth the best ``KG(r outcomes) / r`` (one outcome alone
#: rarely moves a clear-looking but barely observed decision, a few can)
BATCHES = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
#: a revalued cell within this fraction of the best (possibly stale, i.e. higher) value waiting is
#: taken at once: the picks are greedy to within 10 % per step, and a pick no longer revalues
#: every cell of its model one by one when its values all fall a little
LAZY_TOLERANCE = 0.1
#: prompts the per-prompt value sums over (a seeded sample when the log has more)
TRAFFIC = 500
#: the values of a cell :func:`plan_fill` knows: per prompt (a router that decides per prompt, e.g.
#: ``linear``) or per group (``cluster-prior``, ``task-prior``)
VALUES = ("prompt", "group")
DEFAULT_VALUE = "prompt"


@dataclass
class FillPlan:
    """The cells to request (``cells``: (prompt index, model index) in pick order) and why."""

    cells: list[tuple[int, int]]
    estimated_cost: float
    budget: float
    by: str
    group_names: list[str]
    groups: np.ndarray
    lams: np.ndarray
    per_group: dict = field(default_factory=dict)
    value: str = "group"


def model_costs(log, models: Sequence[int] | None = None) -> np.ndarray:
    """(m,) estimated USD per call of each model: its mean logged (or price-table) cost; a model
    to fill whose cost is unknown is one DataError naming it."""
    costs = log.mean_costs()
    unknown = [log.models[j] for j in (range(log.n_models) if models is None else models) if not np.isfinite(costs[j])]
    if unknown:
        raise DataError(f"no cost is known for model(s) {', '.join(unknown)} (no logged cost and no price): a "
                        "budget needs one; give a price table (prices)", path=log.source, column="cost")
    return costs


def prompt_groups(log, *, embeddings: np.ndarray | None = None, encoder: str = DEFAULT_ENCODER,
                  clusters: int | None = None, seed: int = 0) -> tuple[np.ndarray, list[str], str]:
    """(n,) group of each prompt, the groups' names and what they are (see the module docstring)."""
    col = log.group_column()
    if col is not None and log.meta[col].astype(str).nunique() >= 2:
        import pandas as pd

        codes, names = pd.factorize(log.meta[col].astype(str), sort=True)
        return codes.astype(np.int64), [str(n) for n in names], col
    from routecast.router.cluster_prior import fit_clusters
    from routecast.router.group_prior import nearest_group

    if embeddings is None:
        from routecast.router.embedding_cache import embed
        from routecast.router.encoders import get_encoder

        embeddings = embed(get_encoder(encoder), list(log.prompts))
    k = clusters if clusters is not None else int(np.clip(round(np.sqrt(log.n_prompts / 20)), 2, 20))
    if k < 1:
        raise ConfigError(f"clusters must be >= 1, got {clusters}")
    centroids = fit_clusters(embeddings, k, seed)
    groups = nearest_group(embeddings, centroids)
    names = [f"cluster {g}" for g in range(len(centroids))]
    return groups.astype(np.int64), names, f"{len(centroids)} k-means clusters"


def switch_lams(quality: np.ndarray, cost: np.ndarray, n: int = N_LAMS) -> np.ndarray:
    """Up to ``n`` + 1 trade-offs: 0 and quantiles of the lams at which one model's utility
    overtakes another's (a dearer model is worth its extra cost below that lam)."""
    ok = np.isfinite(quality) & np.isfinite(cost)
    q, c = quality[ok], cost[ok]
    dq, dc = q[:, None] - q[None, :], c[:, None] - c[None, :]
    switch = dq[(dq > 0) & (dc > 0)] / dc[(dq > 0) & (dc > 0)]
    if switch.size == 0:
        return np.zeros(1)
    return np.unique(np.concatenate([[0.0], np.quantile(switch, np.linspace(0, 1, n))]))


def decision_gaps(quality: np.ndarray, cost: np.ndarray, lams: np.ndarray) -> np.ndarray:
    """(r, m, L) ``|u_j - max_{l != j} u_l|`` of the utilities ``u = quality - lam * cost`` of each
    row (a group or a prompt) of ``quality`` (r, m) at each lam: how far model j is from changing
    the decision there (0 for a tie)."""
    util = quality[:, :, None] - lams[None, None, :] * np.nan_to_num(cost, nan=0.0)[None, :, None]
    top2 = np.sort(util, axis=1)[:, -2:, :] if quality.shape[1] > 1 else np.repeat(util, 2, axis=1)
    best_other = np.where(util >= top2[:, 1:2, :], top2[:, 0:1, :], top2[:, 1:2, :])
    return np.abs(util - best_other)


def _kg(sd: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """Knowledge gradient ``sd * f(-gap / sd)``, ``f(z) = z Phi(z) + phi(z)``."""
    from scipy.special import ndtr

    z = -gap / np.maximum(sd, 1e-12)
    return sd * (z * ndtr(z) + np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi))


def check_budget(budget: float) -> None:
    """The one refusal of a budget that cannot cap spending (negative, NaN or infinite), shared by
    both ways of choosing cells."""
    if not np.isfinite(budget) or budget < 0:
        raise ConfigError(f"budget must be a number >= 0 (USD), got {budget}")


def choose_cells(log, budget: float, cost: np.ndarray, groups: np.ndarray, *, candidates: np.ndarray,
                 pending: np.ndarray | None = None, strength: float = STRENGTH, lams: np.ndarray | None = None,
                 seed: int = 0) -> tuple[list[tuple[int, int]], float, np.ndarray]:
    """Greedy VOI picks under ``budget`` (see the module docstring).

    ``cost`` (m,) USD per call; ``groups`` (n,) int; ``candidates`` (n, m) bool, the cells that
    may be requested; ``pending`` (n, m) bool, cells already requested whose score is not in yet
    (they count as observations to come). Returns (cells, their estimated cost, the lams).
    """
    from routecast.router.group_prior import shrunk_group_means

    check_budget(budget)
    scores = log.scores
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    logged = ~np.isnan(scores)
    q = shrunk_group_means(groups, scores, n_groups, strength)
    counts = np.zeros((n_groups, log.n_models))
    np.add.at(counts, groups, (logged | (pending if pending is not None else False)).astype(np.float64))
    resid = np.where(logged, scores - q[groups], np.nan)
    with np.errstate(invalid="ignore"):
        var = np.where(logged.sum(axis=0) >= 2, np.nanmean(resid ** 2, axis=0), 0.25)
    var = np.maximum(np.nan_to_num(var, nan=0.25), 0.01)
    safe_cost = np.where(np.isfinite(cost), np.maximum(cost, 1e-12), np.inf)
    lams = switch_lams(log.mean_scores(), cost) if lams is None else np.asarray(lams, dtype=np.float64)
    gap = decision_gaps(q, cost, lams)
    weight = np.bincount(groups, minlength=n_groups) / max(len(groups), 1)

    def value(g: int, j: int) -> float:
        n = counts[g, j] + strength
        sd = np.sqrt(var[j] / n - var[j] / (n + BATCHES))[:, None]  # (r, 1): the move after r more outcomes
        per_cell = _kg(sd, gap[g, j][None, :]).mean(axis=1) / BATCHES
        return float(weight[g] * per_cell.max() / safe_cost[j])

    rng = np.random.default_rng(seed)
    order = rng.permutation(log.n_prompts)
    queues: dict[tuple[int, int], list[int]] = {}
    for i in order:
        for j in np.flatnonzero(candidates[i]):
            queues.setdefault((int(groups[i]), int(j)), []).append(int(i))
    for queue in queues.values():
        queue.reverse()  # pop() from the end takes them in the seeded order
    heap = [(-value(g, j), g, j) for (g, j) in queues]
    heapq.heapify(heap)
    chosen, spent = [], 0.0
    while heap:
        _, g, j = heapq.heappop(heap)
        if spent + safe_cost[j] > budget:
            continue  # this model is too dear for what is left; cheaper ones may still fit
        chosen.append((queues[(g, j)].pop(), j))
        spent += float(safe_cost[j])
        counts[g, j] += 1
        if queues[(g, j)]:
            heapq.heappush(heap, (-value(g, j), g, j))
    return chosen, spent, lams


@dataclass
class RidgeBelief:
    """Bayesian ridge belief about every model's score as a linear function of the prompt features.

    ``features`` (n, p): the centred embedding and a constant; ``mean`` (n, m): the posterior mean
    score at every prompt (the linear router's prediction, fitted on the logged scores);
    ``inverse`` (m, p, p): ``A_j^-1``, ``A_j = diag(prior) + sum_i x_i x_i^T`` over model j's
    observed cells (logged, or requested and waiting for a score: their variance counts before
    their value is known); ``noise`` (m,): ``sigma_j^2``. The mean function's variance at prompt
    k is ``sigma_j^2 x_k^T A_j^-1 x_k``.
    """

    features: np.ndarray
    mean: np.ndarray
    inverse: np.ndarray
    noise: np.ndarray

    def variance(self, j: int) -> np.ndarray:
        """(n,) the variance of model j's mean score at every prompt."""
        return self.noise[j] * np.einsum("kp,pq,kq->k", self.features, self.inverse[j], self.features)

    def observe(self, i: int, j: int, at: np.ndarray | None = None) -> np.ndarray:
        """Condition model j on one more outcome at prompt i (Sherman-Morrison: ``A^-1`` minus a
        rank-one term, O(p^2) instead of a new inverse); returns the fall of the mean's variance,
        ``sigma^2 (x_k^T A^-1 x_i)^2 / (1 + x_i^T A^-1 x_i)``, at the features ``at`` (default:
        every prompt's)."""
        u = self.inverse[j] @ self.features[i]
        denom = 1.0 + float(self.features[i] @ u)
        self.inverse[j] -= np.outer(u, u) / denom
        return self.noise[j] * ((self.features if at is None else at) @ u) ** 2 / denom


def ridge_belief(X: np.ndarray, scores: np.ndarray, observed: np.ndarray, *, alpha: float | None = None,
                 strength: float = STRENGTH) -> RidgeBelief:
    """The belief of :class:`RidgeBelief` from the embeddings ``X`` (n, d), the logged ``scores``
    (n, m; NaN where not logged) and ``observed`` (n, m; logged or pending). ``alpha``: the slopes'
    prior precision (default: the linear router's ridge ``alpha``, so the mean is what it learns);
    the intercept's is ``strength`` pseudo-observations of the mean logged score. ``sigma_j^2``:
    the residual mean square of model j's fit (residual degrees of freedom), else the variance of
    every logged score when it has fewer than two."""
    if alpha is None:
        from routecast.router.linear import LinearRouter

        alpha = LinearRouter().alpha
    X = np.asarray(X, dtype=np.float64)
    n, m = scores.shape
    phi = np.hstack([X - X.mean(axis=0), np.ones((n, 1))])
    prior = np.diag(np.r_[np.full(X.shape[1], float(alpha)), strength])
    logged = ~np.isnan(scores)
    y0 = float(np.nanmean(scores)) if logged.any() else 0.5
    spread = float(np.nanvar(scores)) if logged.sum() >= 2 else 0.25
    spread = spread if spread > 0 else 0.25
    mean, inverse, noise = np.full((n, m), y0), np.empty((m, phi.shape[1], phi.shape[1])), np.full(m, spread)
    for j in range(m):
        f, y = phi[logged[:, j]], scores[logged[:, j], j] - y0
        if len(y):
            fitted = np.linalg.solve(prior + f.T @ f, np.c_[f.T @ y, f.T])
            mean[:, j] += phi @ fitted[:, 0]
            if len(y) >= 2:
                dof = len(y) - float(np.einsum("ip,pi->", f, fitted[:, 1:]))
                noise[j] = float(np.sum((y - f @ fitted[:, 0]) ** 2)) / max(dof, 1.0)
        o = phi[observed[:, j]]
        inverse[j] = np.linalg.inv(prior + o.T @ o)
    return RidgeBelief(phi, mean, inverse, np.maximum(noise, 0.01 * spread))


def _fall(before: np.ndarray, var: np.ndarray, fall: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """Sum over prompts (last-but-one axis) and mean over lams of the decision value removed by a
    variance fall: ``h(var) - h(var - fall)``, ``h`` the KG of the remaining uncertainty."""
    after = _kg(np.sqrt(np.maximum(var - fall, 0.0))[..., None], gap)
    return (before - after).mean(axis=-1).sum(axis=-1)


def choose_cells_by_prompt(log, budget: float, cost: np.ndarray, X: np.ndarray, *, candidates: np.ndarray,
                           pending: np.ndarray | None = None, alpha: float | None = None,
                           strength: float = STRENGTH, lams: np.ndarray | None = None, chunk: int = 256,
                           traffic: int = TRAFFIC, seed: int = 0, progress: bool = False) -> tuple[list[tuple[int, int]], float, np.ndarray]:
    """Greedy per-prompt VOI picks under ``budget``: the value for a router that decides per prompt.

    Belief: :func:`ridge_belief` (what a per-prompt linear router knows). At prompt k and trade-off
    lam, model j is ``gap`` (:func:`decision_gaps` of the posterior means) from changing the
    decision and its mean is uncertain by ``s``; the decision value still at stake there is the
    knowledge gradient of that uncertainty, ``h = s f(-gap / s)``. Observing cell (i, j) shrinks
    ``s^2`` at every prompt k by ``sigma^2 (x_k^T A^-1 x_i)^2 / (1 + x_i^T A^-1 x_i)``, most
    where k resembles i; its value is the fall of ``h`` summed over the traffic (every prompt of the
    log, scored or not, each once) and averaged over the lams of :func:`switch_lams`: expected
    integrated decision improvement. A cell therefore counts where prompts like it are many AND
    the decision there is close; a cheap model's cells are worth something only where a cheap model
    competes (the gaps carry the costs). Greedy by value per estimated USD (the knapsack ratio);
    each pick conditions the belief (:meth:`RidgeBelief.observe`), and as a pick only moves its own
    model's values, which only fall, stale values are recomputed lazily when they reach the top (:data:`LAZY_TOLERANCE`).
    Same arguments and return as :func:`choose_cells`, with ``X`` (n, d) the prompt embeddings;
    ``traffic``: the most prompts the value sums over (seeded sample, :data:`TRAFFIC`).
    """
    from routecast.progress import Progress

    check_budget(budget)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) != log.n_prompts:
        raise ConfigError(f"embeddings must have one row per prompt ({log.n_prompts}), got shape {X.shape}")
    observed = ~np.isnan(log.scores) | (pending if pending is not None else False)
    belief = ridge_belief(X, log.scores, observed, alpha=alpha, strength=strength)
    safe_cost = np.where(np.isfinite(cost), np.maximum(cost, 1e-12), np.inf)
    lams = switch_lams(log.mean_scores(), cost) if lams is None else np.asarray(lams, dtype=np.float64)
    gap = decision_gaps(belief.mean, cost, lams)  # (n, m, L)
    phi = belief.features
    # the traffic the value integrates over: every prompt, or a seeded sample of ``traffic`` of them
    # (a Monte Carlo estimate of the same sum; a revaluation costs O(traffic * p))
    sample = np.zeros(log.n_prompts, dtype=bool)
    take = min(log.n_prompts, traffic)
    sample[np.random.default_rng(seed).choice(log.n_prompts, take, replace=False)] = True
    weight = 1.0 / max(take, 1)
    var = np.stack([belief.variance(j) for j in range(log.n_models)], axis=1)  # (n, m)
    # prompts where model j's decision could move at all (h is ~0 beyond 8 sd, and sd only falls)
    near = (gap.min(axis=2) < 8.0 * np.sqrt(var)) & sample[:, None]
    near_idx = [np.flatnonzero(near[:, j]) for j in range(log.n_models)]
    near_phi = [phi[k] for k in near_idx]  # contiguous copies: a revaluation reads them whole
    near_gap = [gap[k, j] for j, k in enumerate(near_idx)]
    near_var = [var[k, j] for j, k in enumerate(near_idx)]
    heap: list[tuple[float, int, int, int]] = []
    before: list[np.ndarray] = []
    with Progress("valuing missing cells", total=log.n_models, enabled=progress) as bar:
        for j in range(log.n_models):
            bar.step(log.models[j])
            rows = np.flatnonzero(candidates[:, j])
            before.append(_kg(np.sqrt(near_var[j])[:, None], near_gap[j]))
            if not len(rows) or not np.isfinite(safe_cost[j]):
                continue
            for start in range(0, len(rows), chunk):
                i = rows[start:start + chunk]
                projected = phi[i] @ belief.inverse[j]  # (b, p)
                cross = projected @ near_phi[j].T  # (b, |k|)
                self_ = np.einsum("bp,bp->b", projected, phi[i])
                fall = belief.noise[j] * cross ** 2 / (1.0 + self_[:, None])
                value = weight * _fall(before[j], near_var[j], fall, near_gap[j][None]) / safe_cost[j]
                heap.extend((-float(v), j, int(r), 0) for v, r in zip(value, i))
    heapq.heapify(heap)
    version = [0] * log.n_models
    chosen, spent = [], 0.0
    while heap:
        neg, j, i, seen = heapq.heappop(heap)
        if spent + safe_cost[j] > budget:
            continue  # this model is too dear for what is left; cheaper ones may still fit
        if seen != version[j]:  # the belief about j moved since: revalue, and back in line
            u = belief.inverse[j] @ phi[i]
            fall = belief.noise[j] * (near_phi[j] @ u) ** 2 / (1.0 + float(phi[i] @ u))
            value = weight * float(_fall(before[j], near_var[j], fall, near_gap[j])) / safe_cost[j]
            if heap and value < (1.0 - LAZY_TOLERANCE) * -heap[0][0]:
                heapq.heappush(heap, (-value, j, i, version[j]))
                continue
        chosen.append((i, j))
        spent += float(safe_cost[j])
        near_var[j] = np.maximum(near_var[j] - belief.observe(i, j, near_phi[j]), 0.0)
        before[j] = _kg(np.sqrt(near_var[j])[:, None], near_gap[j])
        version[j] += 1
    return chosen, spent, lams


def plan_fill(target, budget: float, *, models: Sequence[str] | None = None, embeddings=None,
              encoder: str = DEFAULT_ENCODER, clusters: int | None = None, seed: int = 0,
              value: str = DEFAULT_VALUE, progress: bool = False) -> FillPlan:
    """The cells of ``target`` (a :class:`routecast.data.fill_cells.FillTarget`) to request for
    ``budget`` USD, among ``models`` (names; default: every model of the log). ``value``:
    ``prompt`` (:func:`choose_cells_by_prompt`, for routers that decide per prompt) or ``group``
    (:func:`choose_cells`, for the per-group priors)."""
    if value not in VALUES:
        raise ConfigError(f"value must be one of {', '.join(VALUES)}, got {value!r}")
    log = target.log
    if log.n_models < 2:
        raise DataError(f"the log has one model ({log.models[0]}): there is no decision to inform; add a "
                        "second model's endpoint and answers (routecast collect)", path=log.source, column="model")
    if models is None:
        idx = list(range(log.n_models))
    else:
        idx = [log.model_index(m) for m in models]
    cost = model_costs(log, idx)
    if value == "prompt" and embeddings is None:
        from routecast.router.embedding_cache import embed
        from routecast.router.encoders import get_encoder

        embeddings = embed(get_encoder(encoder), list(log.prompts))
    groups, names, by = prompt_groups(log, embeddings=embeddings, encoder=encoder, clusters=clusters, seed=seed)
    candidates = ~target.present & ~target.blocked[:, None]
    allowed = np.zeros(log.n_models, dtype=bool)
    allowed[idx] = True
    candidates &= allowed[None, :]
    pending = target.present & np.isnan(log.scores)
    if value == "group":
        cells, spent, lams = choose_cells(log, budget, cost, groups, candidates=candidates, pending=pending, seed=seed)
    else:
        cells, spent, lams = choose_cells_by_prompt(log, budget, cost, embeddings, candidates=candidates,
                                                    pending=pending, seed=seed, progress=progress)
    per_group: dict = {}
    for i, j in cells:
        block = per_group.setdefault(names[groups[i]], {})
        block[log.models[j]] = block.get(log.models[j], 0) + 1
    return FillPlan(cells, spent, float(budget), by, names, groups, lams, per_group, value)


@dataclass
class FillResult:
    plan: FillPlan
    collected: object  # routecast.data.collect.CollectResult


def fill_log(log, endpoints, budget: float, *, out=None, prices=None, columns=None, models: Sequence[str] | None = None,
             encoder: str = DEFAULT_ENCODER, clusters: int | None = None, seed: int = 0, concurrency: int = 32,
             retries: int = 5, backoff: float = 0.5, progress: bool = True, value: str = DEFAULT_VALUE) -> FillResult:
    """Choose the cells of the traffic log ``log`` worth ``budget`` USD, send them to ``endpoints``
    and write ``out`` (default: ``log`` itself) with their answers appended, unscored (then
    ``routecast score``). Resumable: rerun with the same arguments after a kill; the choice is
    the same (seeded) and answers already journaled are not sent again.

    ``models``: fill only these (default: every model of the log that has an endpoint).
    """
    from routecast.data.endpoints import load_endpoints
    from routecast.data.fill_cells import collect_cells, read_fill_target

    target = read_fill_target(log, prices=prices, columns=columns)
    reachable = load_endpoints(endpoints)
    if models is None:
        models = [m for m in target.log.models if m in reachable]
        if not models:
            raise ConfigError(f"no model of the log ({', '.join(target.log.models)}) is in the endpoints file; it "
                              f"has {', '.join(sorted(reachable))}")
    plan = plan_fill(target, budget, models=models, encoder=encoder, clusters=clusters, seed=seed, value=value,
                     progress=progress)
    collected = collect_cells(target, plan.cells, endpoints, out, prices=prices, concurrency=concurrency,
                              retries=retries, backoff=backoff, progress=progress)
    return FillResult(plan, collected)
