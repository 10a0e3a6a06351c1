"""No harm by construction: answer evidence only where it beats the cascade's own ex-ante decision.

A posterior fitted on one log can read answers of one kind well (worked maths, boxed answers) and
another badly (code, chat prose): on a RouterBench-derived set the posterior update made cascade
routing worse than its own ex-ante choice on mbpp while it helped on arc and winogrande. So
:class:`~routecast.cascade.cascade_router.CascadeRouter` fits, beside its posterior, an *ex-ante
twin*: the same planner with no answer evidence (a posterior on the ex-ante prediction alone, no
spread: calling a model reveals nothing, so the twin routes ex ante). On validation, per slice of
prompts (below) the cascade keeps answer evidence only where its validation AIQ beats the twin's
by more than noise; elsewhere it decides ex ante. A live prompt joins the slice of the nearest
centroid (benchmark or cluster) of the router's prompt embeddings, so the rule needs no label at
serving time; the live path embeds the prompt once for the gate and the ex-ante router.

Slices. Benchmarks of the training log, each with at least ``gate_min_prompts`` validation
prompts (the others pooled into ``rest``). A log with fewer than two such benchmarks - one task,
or many small ones - is sliced by k-means clusters of the training prompts' embeddings instead
(:func:`routecast.router.cluster_prior.fit_clusters`, the clustering ``cluster-prior`` routes by;
k = validation prompts // ``gate_min_prompts``, at most :data:`MAX_CLUSTERS`; clusters with too
few validation prompts pooled the same way), so a kind of prompt on which answers mislead is found
without labels. Fewer than two slices: one slice, ``all``.

The decision is made against noise. A slice of 30 prompts measures the AIQ gain of evidence with
a standard error comparable to the gain itself, and deciding each of several slices on its own
raw gain keeps evidence wherever noise favoured it (and drops it wherever noise did not): the
more slices, the more of the split is noise. So (1) each slice's gain has a paired bootstrap
standard error over its validation prompts (both policies on the same draws); (2) the gains are
shrunk towards their common mean by the random-effects estimate of how much slices really differ
(DerSimonian-Laird, as in meta-analysis): slices that differ no more than noise explains all
follow the pooled gain, a slice whose gain is far from the rest (mbpp against arc) keeps its own;
(3) the one-standard-error rule (Breiman et al.: prefer the simpler model unless the richer one is
better by more than ``gate_se`` standard errors) decides twice: on the whole validation split,
evidence against the ex-ante twin, which no answer can mislead (the pooled decision); then per
slice, the split against the pooled decision - a slice departs from it only when its shrunk gain
is beyond ``gate_se`` standard errors on the other side (below 0 where the pooled decision reads
answers, above 0 where it does not). A slice on which validation cannot tell the two policies apart
so follows the log; one where answers clearly mislead (or clearly help) gets its own decision. With
one slice (2) and the second step are void.

Logs whose responses cannot be read (:func:`routecast.data.answers.read_share`) are reported
here too: a warning names each such model and the share read, and when no pool model's answers
can be read the cascade runs on ex-ante evidence only - never a silent fallback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from routecast.cascade.posterior import AnswerFacts, PosteriorQuality, logit, state_features

if TYPE_CHECKING:  # pragma: no cover
    from routecast.data.outcome_log import OutcomeLog

#: below this share of responses with a readable final answer, a model's answers count as unreadable
MIN_READ_SHARE = 0.5
#: the one slice of a log without benchmarks, and the pool of benchmarks too small to judge alone
ALL, REST = "all", "rest"
#: arrays of the gate in a checkpoint (prefix of their names)
PREFIX = "gate."
#: what slices a gate: one slice, the training log's benchmarks, k-means clusters of its prompts
BY = ("all", "benchmark", "cluster")
#: most k-means clusters a log without usable benchmarks is sliced into
MAX_CLUSTERS = 8
#: paired bootstrap draws of each slice's validation gain
N_BOOT = 200


def unreadable_notes(log: "OutcomeLog", models: Sequence[str]) -> tuple[list[str], bool]:
    """(one warning per pool model whose answers are mostly unreadable, whether *no* model's are
    readable). Judged in the format the log declares (:func:`routecast.data.answers.declared_format`)."""
    from routecast.data.answers import read_share

    if log.responses is None:
        return [], False
    shares = {m: read_share(log.responses[:, log.model_index(m)], log.meta) for m in models}
    low = {m: s for m, s in shares.items() if np.isfinite(s) and s < MIN_READ_SHARE}
    if not low:
        return [], False
    none_read = len(low) == sum(np.isfinite(s) for s in shares.values())
    listed = ", ".join(f"{m} ({s:.0%} read)" for m, s in low.items())
    then = ("cascade routing uses ex-ante evidence only" if none_read else
            "their answers give no agreement evidence")
    return [f"final answers of {listed} in {log.source} cannot be read (under {MIN_READ_SHARE:.0%} of responses "
            f"in a known format; declare answer_format in the dataset card): {then}"], none_read


class ExAnteTwin:
    """The cascade router seen without answer evidence: its own posterior on the ex-ante prediction
    only and no spread (calling a model reveals nothing). Every other attribute is the owner's."""

    def __init__(self, owner, posterior: PosteriorQuality):
        self._owner = owner
        self.posterior_ = posterior
        self.tau_ = np.zeros_like(owner.tau_)
        self.lookahead_ = "normal"

    def __getattr__(self, name):
        return getattr(self._owner, name)


def fit_twin(owner, prior: np.ndarray, scores: np.ndarray, masks: Sequence[int],
             members: Callable[[int, int], np.ndarray]) -> ExAnteTwin:
    """The ex-ante twin of ``owner``, from the cross-fitted ``prior`` (n, P) and ``scores`` on train."""
    n, p = prior.shape
    empty = AnswerFacts.empty(1, p)
    feats = np.stack([[state_features(logit(prior[i]), empty, members(m, p)) for m in masks] for i in range(n)])
    s, f = len(masks), feats.shape[-1]
    targets = np.repeat(scores[:, None, :], s, axis=1)
    posterior = PosteriorQuality(C=owner.C).fit(feats.reshape(n * s, p, f), targets.reshape(n * s, p))
    posterior.coef_[:, ~np.any(feats.reshape(-1, f) != 0, axis=0)] = 0.0  # evidence features: never seen
    return ExAnteTwin(owner, posterior)


def twin_from_state(owner, arrays: dict) -> ExAnteTwin | None:
    """The twin a checkpoint stored (None if it has none)."""
    if PREFIX + "coef" not in arrays:
        return None
    posterior = PosteriorQuality(C=owner.C)
    posterior.coef_, posterior.intercept_ = arrays[PREFIX + "coef"], arrays[PREFIX + "intercept"]
    for name, mine, own in (("coef", posterior.coef_, owner.posterior_.coef_),
                            ("intercept", posterior.intercept_, owner.posterior_.intercept_)):
        if np.shape(mine) != np.shape(own) or not np.isfinite(mine).all():
            raise ValueError(f"array {PREFIX}{name} must be finite with the posterior's shape {list(np.shape(own))}, "
                             f"got {list(np.shape(mine))}")
    return ExAnteTwin(owner, posterior)


class EvidenceGate:
    """Per slice, whether answer evidence is used; a prompt's slice from its embedding.

    ``names`` slice names; ``centroids`` (B, d) unit-norm centroids of the router's prompt
    embeddings - one per training benchmark, or per k-means cluster (``by``) - and
    ``slice_of_benchmark`` (B,) the slice of each; ``use`` (S,) bool; ``report`` per slice the
    validation prompts, AIQ with and without evidence, the gain, its standard error and the shrunk
    gain the decision read.
    """

    def __init__(self, names, centroids, slice_of_benchmark, use, report=None, by: str = "benchmark"):
        self.names = list(names)
        self.centroids = np.asarray(centroids, dtype=np.float64)
        self.slice_of_benchmark = np.asarray(slice_of_benchmark, dtype=np.int64)
        self.use = np.asarray(use, dtype=bool)
        self.report = report or {}
        self.by = by
        self.pooled: dict | None = None  # the whole validation split's gain, error and decision (fit_gate)

    def slices(self, owner, prompts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """(n,) slice index of ``prompts`` (nearest centroid of ``owner``'s prompt embeddings, or of
        ``embeddings`` of them when the caller has them; one slice: all zeros, nothing embedded)."""
        if len(self.names) <= 1:
            return np.zeros(len(prompts), dtype=np.int64)
        e = np.asarray(prompt_embeddings(owner, prompts) if embeddings is None else embeddings, dtype=np.float64)
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return self.slice_of_benchmark[np.argmax(e @ self.centroids.T, axis=1)]

    def slice_names(self, owner, prompts: Sequence[str]) -> list[str]:
        """The slice name of each of ``prompts`` (what the per-slice report groups test prompts by)."""
        return [self.names[s] for s in self.slices(owner, prompts)]

    def state(self) -> tuple[dict, dict]:
        """(JSON config, arrays) for a checkpoint."""
        return ({"names": self.names, "report": self.report, "by": self.by, "pooled": self.pooled},
                {PREFIX + "centroids": self.centroids, PREFIX + "slice_of_benchmark": self.slice_of_benchmark,
                 PREFIX + "use": self.use.astype(np.float64)})

    @classmethod
    def from_state(cls, config: dict, arrays: dict, dim: int | None = None) -> "EvidenceGate":
        """The gate :meth:`state` stored, every field checked against the others (``dim``: the
        router encoder's dimension the centroids must have); a ValueError naming the field otherwise."""
        names, by, report = config["names"], config.get("by", "benchmark"), config.get("report")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names) \
                or len(set(names)) != len(names):
            raise ValueError(f"'names' must be a non-empty list of distinct slice names, got {names!r}")
        if by not in BY:
            raise ValueError(f"'by' must be one of {', '.join(BY)}, got {by!r}")
        if report is not None and not isinstance(report, dict):
            raise ValueError("'report' must be an object")
        pooled = config.get("pooled")
        if pooled is not None and not isinstance(pooled, dict):
            raise ValueError("'pooled' must be null or an object")
        centroids, of, use = (np.asarray(arrays[PREFIX + k], dtype=np.float64)
                              for k in ("centroids", "slice_of_benchmark", "use"))
        if centroids.ndim != 2 or not np.isfinite(centroids).all():
            raise ValueError(f"array {PREFIX}centroids must be a finite 2-D array, got shape {list(centroids.shape)}")
        if of.shape != (len(centroids),) or (of != np.round(of)).any() or (of < 0).any() or (of >= len(names)).any():
            raise ValueError(f"array {PREFIX}slice_of_benchmark must give each of the {len(centroids)} centroids a "
                             f"slice index below {len(names)}")
        if use.shape != (len(names),) or not np.isin(use, (0.0, 1.0)).all():
            raise ValueError(f"array {PREFIX}use must hold one 0/1 flag per slice ({len(names)})")
        if len(names) > 1 and dim is not None and centroids.shape[1] != dim:
            raise ValueError(f"array {PREFIX}centroids has dimension {centroids.shape[1]}, the router's encoder {dim}")
        gate = cls(names, centroids, of.astype(np.int64), use > 0.5, report, by)
        gate.pooled = pooled
        return gate


def prompt_embeddings(owner, prompts: Sequence[str]) -> np.ndarray:
    """The router encoder's embeddings of ``prompts`` (cached; what slices are judged on)."""
    from routecast.router.embedding_cache import embed

    return embed(owner._encoder(), list(prompts), show_progress=False)


def gate_slices(owner, train: "OutcomeLog", val: "OutcomeLog", min_prompts: int):
    """(by, names, centroids, slice_of_benchmark): the training log's benchmarks with at least
    ``min_prompts`` validation prompts each, the rest pooled; else k-means clusters of its prompt
    embeddings, pooled alike; else one slice (see the module docstring)."""
    from routecast.router.cluster_prior import fit_clusters
    from routecast.router.group_prior import group_centroids

    one = ("all", [ALL], np.zeros((1, 1)), np.zeros(1, dtype=np.int64))
    k = min(MAX_CLUSTERS, val.n_prompts // max(int(min_prompts), 1))
    labels = train.meta["benchmark"].astype(str).to_numpy() if "benchmark" in train.meta.columns else None
    if k < 2 and (labels is None or len(set(labels)) < 2):
        return one  # neither split can leave two slices: nothing embedded
    emb, emb_val = prompt_embeddings(owner, train.prompts), prompt_embeddings(owner, val.prompts)
    if labels is not None and len(set(labels)) >= 2:
        names = sorted(set(labels))
        centroids = group_centroids(emb, np.searchsorted(np.array(names), labels), len(names)).astype(np.float64)
        pooled = pooled_slices(names, centroids, emb_val, min_prompts)
        if pooled is not None:
            return ("benchmark", *pooled)
    if k >= 2:
        centroids = fit_clusters(emb, k, owner.seed)
        pooled = pooled_slices([f"cluster-{c + 1}" for c in range(len(centroids))], centroids, emb_val, min_prompts)
        if pooled is not None:
            return ("cluster", *pooled)
    return one


def pooled_slices(groups: list[str], centroids: np.ndarray, emb_val: np.ndarray, min_prompts: int):
    """(names, centroids, slice of each group): the ``groups`` (one unit centroid each) nearest to
    at least ``min_prompts`` validation embeddings, the others pooled into ``rest``; None when that
    leaves fewer than two slices."""
    near = np.argmax(np.asarray(emb_val, dtype=np.float64) @ centroids.T, axis=1)
    counts = np.bincount(near, minlength=len(groups))
    big = [g for g, c in zip(groups, counts) if c >= min_prompts]
    names = big + ([REST] if len(big) < len(groups) else [])
    if len(names) < 2:
        return None
    return names, centroids, np.array([names.index(g) if g in big else names.index(REST) for g in groups])


def shrunk_gains(gain: np.ndarray, se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shrunk gain, its standard error) of each slice: the random-effects (DerSimonian-Laird)
    posterior of slice effects ``gain`` measured with standard errors ``se`` - each pulled towards
    the precision-weighted mean by as much as its noise exceeds the spread between slices. One
    slice: its own gain and error."""
    gain, var = np.asarray(gain, np.float64), np.maximum(np.asarray(se, np.float64) ** 2, 1e-12)
    if len(gain) < 2:
        return gain, np.sqrt(var)
    w = 1.0 / var
    fixed = float((w * gain).sum() / w.sum())
    q = float((w * (gain - fixed) ** 2).sum())
    tau2 = max(0.0, (q - (len(gain) - 1)) / (w.sum() - (w ** 2).sum() / w.sum()))
    w_re = 1.0 / (var + tau2)
    mean, mean_var = float((w_re * gain).sum() / w_re.sum()), float(1.0 / w_re.sum())
    keep = tau2 / (tau2 + var)  # the share of a slice's own gain its posterior keeps
    shrunk = keep * gain + (1.0 - keep) * mean
    return shrunk, np.sqrt(keep * var + (1.0 - keep) ** 2 * mean_var)


def slice_decisions(default: bool, shrunk: np.ndarray, shrunk_se: np.ndarray, z: float) -> np.ndarray:
    """(S,) whether each slice reads answers: the pooled decision ``default``, departed from only
    where the shrunk gain lies beyond ``z`` standard errors on the other side of 0."""
    shrunk, bound = np.asarray(shrunk, np.float64), z * np.asarray(shrunk_se, np.float64)
    return ~(shrunk < -bound) if default else shrunk > bound


def fit_gate(owner, val: "OutcomeLog", train: "OutcomeLog", evidence: list, exante: list, walk, outcomes,
             unit: np.ndarray, lo: float, hi: float, min_prompts: int):
    """Decide per slice on ``val`` between the ``evidence`` planners and the ``exante`` ones
    (at ``owner.lams_``, the chosen kappa; ``owner.gate_se`` standard errors of the shrunk gain,
    ``owner.seed`` the bootstrap draws); returns (gate, planners per prompt, called, chosen)."""
    from routecast.evaluation.metrics import aiq

    by, names, centroids, of = gate_slices(owner, train, val, min_prompts)
    gate = EvidenceGate(names, centroids, of, np.zeros(len(names), bool), by=by)
    which = gate.slices(owner, list(val.prompts))
    runs = [walk(evidence, owner.lams_, reset=True), walk(exante, owner.lams_, reset=True)]
    curves = [outcomes(called, chosen, unit, val.scores) for called, chosen in runs]
    rng = np.random.default_rng(owner.seed)

    def gain(rows) -> tuple[float, float, float]:
        e, x = (float(aiq(c[:, rows].mean(axis=1), q[:, rows].mean(axis=1), lo, hi)) for c, q in curves)
        return e, x, e - x

    def measure(rows) -> tuple[float, float, float, float]:  # AIQs, gain and its paired bootstrap error
        draws = [gain(rows[rng.integers(0, len(rows), len(rows))])[2] for _ in range(N_BOOT)]
        return (*gain(rows), float(np.std(draws)))

    z = float(owner.gate_se)
    pooled = measure(np.arange(len(which)))
    default = bool(pooled[2] > z * pooled[3])  # the decision for the whole validation split
    gate.pooled = {"gain": pooled[2], "gain_se": pooled[3], "uses_evidence": default}
    measured = [s for s in range(len(names)) if (which == s).any()]
    stats = {s: pooled if len(measured) == 1 else measure(np.flatnonzero(which == s)) for s in measured}
    shrunk, shrunk_se = shrunk_gains([stats[s][2] for s in measured], [stats[s][3] for s in measured])
    for s, name in enumerate(names):
        if s not in stats:
            gate.report[name] = {"val_prompts": 0, "uses_evidence": False}
            continue
        i = measured.index(s)
        gate.use[s] = slice_decisions(default, shrunk, shrunk_se, z)[i]
        e, x, g, se = stats[s]
        gate.report[name] = {"val_prompts": int((which == s).sum()), "val_aiq_evidence": e, "val_aiq_ex_ante": x,
                             "gain": g, "gain_se": se, "shrunk_gain": float(shrunk[i]),
                             "shrunk_gain_se": float(shrunk_se[i]), "uses_evidence": bool(gate.use[s])}
    pick = gate.use[which]
    planners = [e if u else x for e, x, u in zip(evidence, exante, pick)]
    called = np.where(pick[None, :], runs[0][0], runs[1][0])
    chosen = np.where(pick[None, :], runs[0][1], runs[1][1])
    return gate, planners, called, chosen


def gated(owner, prompts: Sequence[str], evidence: list, exante: list,
          embeddings: np.ndarray | None = None) -> list:
    """The planner of each prompt under the fitted gate (evidence or ex ante, by its slice;
    ``embeddings``: the router's embeddings of ``prompts`` when the caller has them)."""
    gate = getattr(owner, "gate_", None)
    if gate is None:
        return evidence
    which = gate.slices(owner, prompts, embeddings)
    return [e if gate.use[s] else x for e, x, s in zip(evidence, exante, which)]


def reads_embeddings(owner) -> bool:
    """Whether the gate needs a prompt's embedding to pick its planner owner (it splits, and not
    every slice uses evidence)."""
    gate = getattr(owner, "gate_", None)
    return gate is not None and len(gate.names) > 1 and not gate.use.all()


def live_owner(owner, prompt: str, embedding: np.ndarray | None = None):
    """The planner owner of one live prompt: the router itself or its ex-ante twin (``embedding``:
    the prompt's (1, d) router embedding, if the caller has it: then nothing is embedded here)."""
    if not reads_embeddings(owner):
        return owner
    return owner if owner.gate_.use[owner.gate_.slices(owner, [prompt], embedding)[0]] else owner.twin_


def gate_state(owner) -> tuple[dict | None, dict]:
    """(JSON config or None, arrays) of ``owner``'s gate and twin, for its checkpoint."""
    if getattr(owner, "gate_", None) is None:
        return None, {}
    config, arrays = owner.gate_.state()
    arrays.update({PREFIX + "coef": owner.twin_.posterior_.coef_, PREFIX + "intercept": owner.twin_.posterior_.intercept_})
    return config, arrays


def set_gate_state(owner, config: dict | None, arrays: dict) -> None:
    """Restore what :func:`gate_state` stored (no gate: evidence everywhere, as before gates)."""
    if config is not None and not isinstance(config, dict):
        raise ValueError("must be null or an object")
    if config is not None and PREFIX + "coef" not in arrays:
        raise ValueError(f"the ex-ante twin's array {PREFIX}coef is missing")
    owner.twin_ = twin_from_state(owner, arrays) if config is not None else None
    dim = int(owner._encoder().dim) if config is not None else None
    owner.gate_ = EvidenceGate.from_state(config, arrays, dim) if config is not None else None
