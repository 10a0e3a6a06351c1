"""RouterDC's dual contrastive loss (Chen et al., NeurIPS 2024), for ``finetuned-encoder``.

RouterDC learns one embedding ``k_j`` per candidate model next to the query encoder ``E`` and
routes by the similarity ``z_ij = cos(E(x_i), k_j) / temperature`` (softmax over models). Two
contrastive terms train it:

* **sample-LLM**: for each query, the ``top_k`` best-scoring models are positives and the
  ``last_k`` worst-scoring ones negatives; each positive ``p`` is contrasted with the negatives
  that scored strictly worse than it::

      L_i = - sum_p w+_p log( e^{z_p} / (e^{z_p} + sum_n w-_n [s_n < s_p] e^{z_n}) )

  It only cares about the *order* of the models on a query, which is what routing needs, and
  so is insensitive to how each benchmark scales its scores.
* **sample-sample**: training queries are clustered once (k-means on their initial embeddings);
  a query's positive is another query of its cluster in the batch and its negatives are the
  batch's queries of other clusters; InfoNCE on the normalised query embeddings. It keeps
  queries of one kind together, which the sample-LLM term alone does not (RouterDC found the
  encoder otherwise collapses on a few directions).

Total: ``L_sample-LLM + sample_weight * L_sample-sample`` (RouterDC's lambda).

What differs from the paper's code, and why:

* Unlogged cells (NaN) are neither positives nor negatives, so a missing outcome never counts as
  a failure.
* Ties are split, not broken by model order: when several models tie at the ``top_k``-th (or
  ``last_k``-th) place, they share the remaining slots as fractional weights ``w`` (with binary
  scores "the top 3" is often 5 tied models, and picking by column order would favour the
  first columns). A positive is only contrasted with strictly worse models (the paper drops
  negatives scoring > 0.5 and positives scoring 0; on binary scores the two rules agree).
* The sample-sample positive of query ``i`` is the next query of its cluster in the (already
  shuffled) batch, and every other-cluster query is a negative: the same estimator without a
  second random generator, so a fit is reproducible from ``seed`` alone and the value can be
  checked by hand. A query alone in its cluster within the batch, or a batch of one cluster,
  contributes nothing.
* Each term is averaged over the queries that contribute to it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from routecast.errors import ConfigError

#: the ``objective`` values of ``finetuned-encoder``
OBJECTIVES = ("masked", "routerdc", "masked+routerdc")


def check_dual_contrastive(*, objective: str, top_k, last_k, n_clusters, temperature, sample_weight,
                           n_models: int | None = None, n_prompts: int | None = None,
                           router: str = "finetuned-encoder") -> None:
    """One clear line naming the bad hyperparameter. ``n_models``/``n_prompts`` (known at fit)
    bound ``top_k``/``last_k`` and ``n_clusters``; the contrastive ones are only checked when the
    objective uses them."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"{router}: objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    if objective == "masked":
        return
    for name, value in (("top_k", top_k), ("last_k", last_k), ("n_clusters", n_clusters)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{router}: {name} must be a positive integer, got {value!r}")
    if n_models is not None:
        for name, value in (("top_k", top_k), ("last_k", last_k)):
            if value > n_models:
                raise ConfigError(f"{router}: {name}={value} exceeds the number of models ({n_models})")
    if n_clusters < 2:
        raise ConfigError(f"{router}: n_clusters must be at least 2 (the sample-sample loss needs "
                          f"other clusters as negatives), got {n_clusters}")
    if n_prompts is not None and n_clusters > n_prompts:
        raise ConfigError(f"{router}: n_clusters={n_clusters} exceeds the number of training prompts ({n_prompts})")
    if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"{router}: temperature must be a positive number, got {temperature!r}")
    if not (isinstance(sample_weight, (int, float)) and np.isfinite(sample_weight) and sample_weight >= 0):
        raise ConfigError(f"{router}: sample_weight must be a number >= 0, got {sample_weight!r}")


# --------------------------------------------------------------------------- the terms
def slot_weights(scores: torch.Tensor, k: int, *, largest: bool) -> torch.Tensor:
    """(b, m) weights of the ``k`` best (``largest``) or worst models per row, ties shared.

    NaN cells get 0. A row with fewer than ``k`` logged cells takes all of them. Models tied at the
    k-th place share the slots left: with scores (1, 1, 1, 0) and k = 2, each 1 gets 2/3.
    """
    valid = ~torch.isnan(scores)
    fill = float("-inf") if largest else float("inf")
    safe = torch.where(valid, scores, torch.full_like(scores, fill))
    ordered = torch.sort(safe, dim=1, descending=largest).values
    slots = torch.clamp(valid.sum(dim=1), max=k)  # (b,)
    at = ordered.gather(1, (slots - 1).clamp_min(0)[:, None])  # the k-th value per row
    beyond = (safe > at) if largest else (safe < at)
    beyond = beyond & valid
    tied = (safe == at) & valid
    left = (slots - beyond.sum(dim=1)).to(scores.dtype)
    share = left / tied.sum(dim=1).clamp_min(1).to(scores.dtype)
    weights = beyond.to(scores.dtype) + tied.to(scores.dtype) * share[:, None]
    return torch.where(slots[:, None] > 0, weights, torch.zeros_like(weights))


def sample_llm_loss(z: torch.Tensor, scores: torch.Tensor, top_k: int, last_k: int) -> torch.Tensor:
    """The sample-LLM term on similarities ``z`` (b, m, already divided by the temperature) and
    scores (b, m, NaN = unlogged); see the module docstring."""
    pos = slot_weights(scores, top_k, largest=True)
    neg = slot_weights(scores, last_k, largest=False)
    filled = torch.nan_to_num(scores, nan=0.0)
    valid = ~torch.isnan(scores)
    # worse[i, p, n]: model n is a weighted negative strictly below positive p on query i
    worse = (filled[:, None, :] < filled[:, :, None]) & valid[:, None, :] & valid[:, :, None] & (neg[:, None, :] > 0)
    log_neg = torch.where(worse, z[:, None, :] + torch.log(neg.clamp_min(1e-30))[:, None, :],
                          torch.full_like(worse, float("-inf"), dtype=z.dtype))
    log_den = torch.logsumexp(torch.cat([z[:, :, None], log_neg], dim=2), dim=2)  # (b, m)
    pair = (pos > 0) & worse.any(dim=2)
    per_query = -(torch.where(pair, pos * (z - log_den), torch.zeros_like(z))).sum(dim=1)
    counted = pair.any(dim=1)
    return per_query.sum() / counted.sum().clamp_min(1).to(z.dtype)


def next_in_cluster(clusters: torch.Tensor) -> torch.Tensor:
    """For each row, the index of the next row (cyclically, in batch order) of the same cluster;
    -1 when the row is alone in its cluster in this batch."""
    b = clusters.shape[0]
    if b < 2:
        return torch.full((b,), -1, dtype=torch.long, device=clusters.device)
    offsets = torch.arange(1, b, device=clusters.device)
    idx = (torch.arange(b, device=clusters.device)[:, None] + offsets[None, :]) % b  # (b, b-1) candidates in order
    same = clusters[idx] == clusters[:, None]
    first = torch.argmax(same.to(torch.int8), dim=1)  # the first True (0 when none: masked below)
    chosen = idx.gather(1, first[:, None])[:, 0]
    return torch.where(same.any(dim=1), chosen, torch.full_like(chosen, -1))


def sample_sample_loss(h: torch.Tensor, clusters: torch.Tensor, temperature: float) -> torch.Tensor:
    """The sample-sample term on query embeddings ``h`` (b, d) with cluster ids (b,)."""
    hn = F.normalize(h, p=2, dim=1)
    sim = hn @ hn.T / float(temperature)
    partner = next_in_cluster(clusters)
    other = clusters[None, :] != clusters[:, None]  # (b, b) negatives
    rows = (partner >= 0) & other.any(dim=1)
    if not bool(rows.any()):
        return h.sum() * 0.0  # keeps the graph (and the device) without a value
    safe_partner = partner.clamp_min(0)
    positive = sim.gather(1, safe_partner[:, None])[:, 0]
    negatives = torch.where(other, sim, torch.full_like(sim, float("-inf")))
    log_den = torch.logsumexp(torch.cat([positive[:, None], negatives], dim=1), dim=1)
    per_query = torch.where(rows, log_den - positive, torch.zeros_like(positive))
    return per_query.sum() / rows.sum().to(h.dtype)


def model_similarities(h: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """cos(h_i, k_j): (b, d) queries x (m, d) model embeddings -> (b, m)."""
    return F.normalize(h, p=2, dim=1) @ F.normalize(keys, p=2, dim=1).T


class DualContrastiveObjective:
    """The training objective of ``finetuned-encoder`` as ``(net, batch) -> loss``, for
    :class:`~routecast.router.lightning_module.QualityNetModule`.

    A batch is ``(input_ids, attention_mask, cluster_ids, scores)``. With ``masked`` the masked
    quality loss of the net's quality head is added (``masked+routerdc``). A plain class (not a
    closure) so DDP's spawn can pickle it.
    """

    def __init__(self, *, top_k: int, last_k: int, temperature: float, sample_weight: float,
                 masked: bool, masked_kind: str = "bce"):
        self.top_k = int(top_k)
        self.last_k = int(last_k)
        self.temperature = float(temperature)
        self.sample_weight = float(sample_weight)
        self.masked = bool(masked)
        self.masked_kind = masked_kind

    def terms(self, net, batch) -> dict[str, torch.Tensor]:
        from routecast.router.quality_net import masked_quality_loss

        ids, mask, clusters, scores = batch
        h = net.pool(ids, mask)
        z = model_similarities(h, net.model_keys) / self.temperature
        out = {"sample_llm": sample_llm_loss(z, scores, self.top_k, self.last_k),
               "sample_sample": sample_sample_loss(h, clusters, self.temperature)}
        if self.masked:
            out["masked"] = masked_quality_loss(net.head(h), scores, self.masked_kind)
        return out

    def __call__(self, net, batch) -> torch.Tensor:
        t = self.terms(net, batch)
        total = t["sample_llm"] + self.sample_weight * t["sample_sample"]
        return total + t["masked"] if self.masked else total
