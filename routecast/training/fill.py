"""``collect --fill``: which missing cells of a traffic log are worth paying for.

A traffic log shows each prompt's answer from one model. Filling every missing (prompt, model)
cell costs as much as a full benchmark sweep; most of those cells would not change a single
routing decision. This module spends a USD budget on the cells whose outcome is most likely to
change one, by value of information (VOI) per prompt group:

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


def _kg(sd: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """Knowledge gradient ``sd * f(-gap / sd)``, ``f(z) = z Phi(z) + phi(z)``."""
    from scipy.stats import norm

    z = -gap / np.maximum(sd, 1e-12)
    return sd * (z * norm.cdf(z) + norm.pdf(z))


def choose_cells(log, budget: float, cost: np.ndarray, groups: np.ndarray, *, candidates: np.ndarray,
                 pending: np.ndarray | None = None, strength: float = STRENGTH, lams: np.ndarray | None = None,
                 seed: int = 0) -> tuple[list[tuple[int, int]], float, np.ndarray]:
    """Greedy VOI picks under ``budget`` (see the module docstring).

    ``cost`` (m,) USD per call; ``groups`` (n,) int; ``candidates`` (n, m) bool, the cells that
    may be requested; ``pending`` (n, m) bool, cells already requested whose score is not in yet
    (they count as observations to come). Returns (cells, their estimated cost, the lams).
    """
    from routecast.router.group_prior import shrunk_group_means

    if not np.isfinite(budget) or budget < 0:
        raise ConfigError(f"budget must be a number >= 0 (USD), got {budget}")
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
    util = q[:, :, None] - lams[None, None, :] * np.nan_to_num(cost, nan=0.0)[None, :, None]  # (G, m, L)
    top2 = np.sort(util, axis=1)[:, -2:, :] if log.n_models > 1 else np.repeat(util, 2, axis=1)
    best_other = np.where(util >= top2[:, 1:2, :], top2[:, 0:1, :], top2[:, 1:2, :])
    gap = np.abs(util - best_other)
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


def plan_fill(target, budget: float, *, models: Sequence[str] | None = None, embeddings=None,
              encoder: str = DEFAULT_ENCODER, clusters: int | None = None, seed: int = 0) -> FillPlan:
    """The cells of ``target`` (a :class:`routecast.data.fill_cells.FillTarget`) to request for
    ``budget`` USD, among ``models`` (names; default: every model of the log)."""
    log = target.log
    if log.n_models < 2:
        raise DataError(f"the log has one model ({log.models[0]}): there is no decision to inform; add a "
                        "second model's endpoint and answers (routecast collect)", path=log.source, column="model")
    if models is None:
        idx = list(range(log.n_models))
    else:
        idx = [log.model_index(m) for m in models]
    cost = model_costs(log, idx)
    groups, names, by = prompt_groups(log, embeddings=embeddings, encoder=encoder, clusters=clusters, seed=seed)
    candidates = ~target.present & ~target.blocked[:, None]
    allowed = np.zeros(log.n_models, dtype=bool)
    allowed[idx] = True
    candidates &= allowed[None, :]
    pending = target.present & np.isnan(log.scores)
    cells, spent, lams = choose_cells(log, budget, cost, groups, candidates=candidates, pending=pending, seed=seed)
    per_group: dict = {}
    for i, j in cells:
        block = per_group.setdefault(names[groups[i]], {})
        block[log.models[j]] = block.get(log.models[j], 0) + 1
    return FillPlan(cells, spent, float(budget), by, names, groups, lams, per_group)


@dataclass
class FillResult:
    plan: FillPlan
    collected: object  # routecast.data.collect.CollectResult


def fill_log(log, endpoints, budget: float, *, out=None, prices=None, columns=None, models: Sequence[str] | None = None,
             encoder: str = DEFAULT_ENCODER, clusters: int | None = None, seed: int = 0, concurrency: int = 32,
             retries: int = 5, backoff: float = 0.5, progress: bool = True) -> FillResult:
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
    plan = plan_fill(target, budget, models=models, encoder=encoder, clusters=clusters, seed=seed)
    collected = collect_cells(target, plan.cells, endpoints, out, prices=prices, concurrency=concurrency,
                              retries=retries, backoff=backoff, progress=progress)
    return FillResult(plan, collected)
