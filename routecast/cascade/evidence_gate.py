"""No harm by construction: answer evidence only where it beats the cascade's own ex-ante decision.

A posterior fitted on one log can read answers of one kind well (worked maths, boxed answers) and
another badly (code, chat prose): on a RouterBench-derived set the posterior update made cascade
routing worse than its own ex-ante choice on mbpp while it helped on arc and winogrande. So
:class:`~routecast.cascade.cascade_router.CascadeRouter` fits, beside its posterior, an *ex-ante
twin*: the same planner with no answer evidence (a posterior on the ex-ante prediction alone, no
spread: calling a model reveals nothing, so the twin routes ex ante). On validation, per slice of
prompts (a benchmark of the training log; small ones pooled; one slice when the log has no
benchmark column) the cascade keeps answer evidence only where its validation AIQ beats the
twin's; elsewhere it decides ex ante. A live prompt joins the slice of the nearest benchmark
centroid of the router's prompt embeddings, so the rule needs no label at serving time.

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
    return ExAnteTwin(owner, posterior)


class EvidenceGate:
    """Per slice, whether answer evidence is used; a prompt's slice from its embedding.

    ``names`` slice names; ``centroids`` (B, d) unit-norm mean prompt embedding per training
    benchmark and ``slice_of_benchmark`` (B,) its slice index; ``use`` (S,) bool; ``report`` per
    slice the validation prompts and AIQ with and without evidence.
    """

    def __init__(self, names, centroids, slice_of_benchmark, use, report=None):
        self.names = list(names)
        self.centroids = np.asarray(centroids, dtype=np.float64)
        self.slice_of_benchmark = np.asarray(slice_of_benchmark, dtype=np.int64)
        self.use = np.asarray(use, dtype=bool)
        self.report = report or {}

    def slices(self, owner, prompts: Sequence[str]) -> np.ndarray:
        """(n,) slice index of ``prompts`` (nearest benchmark centroid of ``owner``'s prompt
        embeddings; one slice: all zeros, nothing embedded)."""
        if len(self.names) <= 1:
            return np.zeros(len(prompts), dtype=np.int64)
        e = np.asarray(prompt_embeddings(owner, prompts), dtype=np.float64)
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return self.slice_of_benchmark[np.argmax(e @ self.centroids.T, axis=1)]

    def state(self) -> tuple[dict, dict]:
        """(JSON config, arrays) for a checkpoint."""
        return ({"names": self.names, "report": self.report},
                {PREFIX + "centroids": self.centroids, PREFIX + "slice_of_benchmark": self.slice_of_benchmark,
                 PREFIX + "use": self.use.astype(np.float64)})

    @classmethod
    def from_state(cls, config: dict, arrays: dict) -> "EvidenceGate":
        return cls(config["names"], arrays[PREFIX + "centroids"], arrays[PREFIX + "slice_of_benchmark"].astype(int),
                   arrays[PREFIX + "use"] > 0.5, config.get("report"))


def prompt_embeddings(owner, prompts: Sequence[str]) -> np.ndarray:
    """The router encoder's embeddings of ``prompts`` (cached; what slices are judged on)."""
    from routecast.router.embedding_cache import embed

    return embed(owner._encoder(), list(prompts), show_progress=False)


def benchmark_slices(owner, train: "OutcomeLog", val: "OutcomeLog", min_prompts: int):
    """(names, centroids, slice_of_benchmark): the training log's benchmarks with at least
    ``min_prompts`` validation prompts each, the rest pooled; one slice without benchmarks."""
    labels = train.meta["benchmark"].astype(str).to_numpy() if "benchmark" in train.meta.columns else None
    if labels is None or len(set(labels)) < 2:
        return [ALL], np.zeros((1, 1)), np.zeros(1, dtype=np.int64)
    names = sorted(set(labels))
    emb = prompt_embeddings(owner, train.prompts)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    centroids = np.stack([emb[labels == b].mean(axis=0) for b in names])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    near = np.argmax(prompt_embeddings(owner, val.prompts) @ centroids.T, axis=1)
    counts = np.bincount(near, minlength=len(names))
    big = [b for b, c in zip(names, counts) if c >= min_prompts]
    slice_names = big + ([REST] if len(big) < len(names) else [])
    if len(slice_names) < 2:
        return [ALL], np.zeros((1, 1)), np.zeros(1, dtype=np.int64)
    of = np.array([slice_names.index(b) if b in big else slice_names.index(REST) for b in names])
    return slice_names, centroids, of


def fit_gate(owner, val: "OutcomeLog", train: "OutcomeLog", evidence: list, exante: list, walk, outcomes,
             unit: np.ndarray, lo: float, hi: float, min_prompts: int):
    """Decide per slice on ``val`` between the ``evidence`` planners and the ``exante`` ones
    (at ``owner.lams_``, the chosen kappa); returns (gate, planners per prompt, called, chosen)."""
    from routecast.evaluation.metrics import aiq

    names, centroids, of = benchmark_slices(owner, train, val, min_prompts)
    gate = EvidenceGate(names, centroids, of, np.ones(len(names), bool))
    which = gate.slices(owner, list(val.prompts))
    runs = [walk(evidence, owner.lams_, reset=True), walk(exante, owner.lams_, reset=True)]
    curves = [outcomes(called, chosen, unit, val.scores) for called, chosen in runs]
    for s, name in enumerate(names):
        rows = which == s
        if not rows.any():
            gate.use[s] = False
            gate.report[name] = {"val_prompts": 0}
            continue
        values = [float(aiq(c[:, rows].mean(axis=1), q[:, rows].mean(axis=1), lo, hi)) for c, q in curves]
        gate.use[s] = values[0] > values[1]
        gate.report[name] = {"val_prompts": int(rows.sum()), "val_aiq_evidence": values[0],
                             "val_aiq_ex_ante": values[1], "uses_evidence": bool(gate.use[s])}
    pick = gate.use[which]
    planners = [e if u else x for e, x, u in zip(evidence, exante, pick)]
    called = np.where(pick[None, :], runs[0][0], runs[1][0])
    chosen = np.where(pick[None, :], runs[0][1], runs[1][1])
    return gate, planners, called, chosen


def gated(owner, prompts: Sequence[str], evidence: list, exante: list) -> list:
    """The planner of each prompt under the fitted gate (evidence or ex ante, by its slice)."""
    gate = getattr(owner, "gate_", None)
    if gate is None:
        return evidence
    which = gate.slices(owner, prompts)
    return [e if gate.use[s] else x for e, x, s in zip(evidence, exante, which)]


def live_owner(owner, prompt: str):
    """The planner owner of one live prompt: the router itself or its ex-ante twin."""
    gate = getattr(owner, "gate_", None)
    if gate is None or gate.use.all():
        return owner
    return owner if gate.use[gate.slices(owner, [prompt])[0]] else owner.twin_


def gate_state(owner) -> tuple[dict | None, dict]:
    """(JSON config or None, arrays) of ``owner``'s gate and twin, for its checkpoint."""
    if getattr(owner, "gate_", None) is None:
        return None, {}
    config, arrays = owner.gate_.state()
    arrays.update({PREFIX + "coef": owner.twin_.posterior_.coef_, PREFIX + "intercept": owner.twin_.posterior_.intercept_})
    return config, arrays


def set_gate_state(owner, config: dict | None, arrays: dict) -> None:
    """Restore what :func:`gate_state` stored (no gate: evidence everywhere, as before gates)."""
    owner.twin_ = twin_from_state(owner, arrays) if config is not None else None
    owner.gate_ = EvidenceGate.from_state(config, arrays) if config is not None else None
