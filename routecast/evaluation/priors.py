"""The priors a learned router has to beat, and the choice of "the better prior" on validation.

The priors are lookup tables (issue: routing that beats a lookup table): ``cluster-prior`` (per
k-means cluster of the embedding), ``task-prior`` (per benchmark, the task found from the
embedding by a nearest-centroid classifier) and ``task-prior (logged task)``, the same table given
each prompt's logged ``benchmark``/``task`` value: the "dataset oracle" of LLMRouterBench, which
uses metadata a learned router does not see.

Every learned policy's ``gain_over_prior`` is measured against ONE of them, chosen by
**validation** AIQ (:func:`choose_prior`): choosing it by test AIQ would pick the prior that got
lucky on the very prompts the gain is measured on, and bias every gain downwards. ``routecast
evaluate`` (routecast.training.experiment) and benchmarks/plateau.py both choose here
(:mod:`routecast.evaluation.prior_labels` holds the labels and the rule, re-exported here).
"""

from __future__ import annotations

import numpy as np

from routecast.errors import RoutingError
from routecast.evaluation.evaluate import evaluate
from routecast.evaluation.measure import sweep_router
from routecast.evaluation.prior_labels import (CHOSEN_BY, LOGGED_TASK_PRIOR, PRIOR_LABELS, PRIOR_ROUTERS,
                                               choose_prior, prior_choice)

__all__ = ["PRIOR_ROUTERS", "LOGGED_TASK_PRIOR", "PRIOR_LABELS", "CHOSEN_BY", "LoggedTaskQuality",
           "validation_aiq", "choose_prior", "prior_choice", "score_prior"]


class LoggedTaskQuality:
    """A fitted task prior (or a router holding one as ``prior_router_``, e.g. prior-residual)
    seen through the interface :func:`~routecast.evaluation.measure.sweep_router` uses,
    predicting from each prompt's logged task in ``log`` (``predict_quality_for_tasks``) instead of
    from its embedding.

    ``predict_quality`` is given the prompts of ``log`` in order: all of them, or only its
    complete rows (what ``sweep_router`` routes).
    """

    def __init__(self, router, log, label: str = LOGGED_TASK_PRIOR):
        self.router, self.log, self.name = router, log, label
        self.models_, self.costs_ = router.models_, router.costs_
        self.family = router.family
        task_router = getattr(router, "prior_router_", router)
        self.column = task_router.column_
        if self.column not in log.meta.columns:
            raise RoutingError(f"{label}: column {self.column!r} is not in the metadata of {log.source}")

    def _tasks(self, n: int) -> list:
        tasks = list(self.log.meta[self.column])
        if n == len(tasks):
            return tasks
        mask = self.log.complete_rows()
        if n == int(mask.sum()):
            return [t for t, keep in zip(tasks, mask) if keep]
        raise RoutingError(f"{self.name}: got {n} prompts; {self.log.source} has {len(tasks)} "
                           f"({int(mask.sum())} complete)")

    def predict_quality(self, texts=None, *, embeddings=None) -> np.ndarray:
        n = len(texts) if texts is not None else len(embeddings)
        return self.router.predict_quality_for_tasks(self._tasks(n), texts, embeddings=embeddings)


def validation_aiq(policy, val_log, *, embeddings: np.ndarray | None = None) -> float:
    """AIQ of ``policy`` (a fitted router, or a wrapper like :class:`LoggedTaskQuality`) on
    ``val_log``, over that split's own single-model cost range; NaN when it is a single point."""
    curve = sweep_router(policy, val_log, embeddings=embeddings, label="policy")
    return float(evaluate({"policy": curve}, val_log, n_boot=0).routers["policy"].aiq)


def score_prior(name: str, router, val_log, test_log, *, val_embeddings=None, test_embeddings=None):
    """For a fitted prior ``name``: (extra test curves, validation AIQs by label).

    ``task-prior`` also yields its logged-task form (:data:`LOGGED_TASK_PRIOR`) as a test curve.
    A validation split without complete rows gives no validation AIQ (the prior then cannot be
    chosen); nothing here looks at the test split's scores except the curve it returns.
    """
    curves, val = {}, {}
    usable_val = val_log is not None and val_log.n_prompts > 0 and bool(val_log.complete_rows().any())
    if usable_val:
        val[name] = validation_aiq(router, val_log, embeddings=val_embeddings)
    if name == "task-prior":
        curves[LOGGED_TASK_PRIOR] = sweep_router(LoggedTaskQuality(router, test_log), test_log,
                                                 embeddings=test_embeddings, label=LOGGED_TASK_PRIOR)
        if usable_val:
            val[LOGGED_TASK_PRIOR] = validation_aiq(LoggedTaskQuality(router, val_log), val_log,
                                                    embeddings=val_embeddings)
    return curves, val
