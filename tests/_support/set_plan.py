"""A cascade whose plan calls a set of models together: the fixture of the set-action serving
test and of the two-check latency benchmark (benchmarks/serving.py).

Trained with the ``sets`` look-ahead on the constructed pool of the cascade tests
(tests.cascade.test_cascade_router.synthetic: A and B cheap, right 80 % of the time, C strong;
only agreement is informative), at the first validation lam whose plan calls {A, B} together first
on every test prompt: "A and B in parallel, then C only if they disagree".
"""

from __future__ import annotations

import numpy as np


def set_plan_cascade():
    """(fitted CascadeRouter, test log, lam)."""
    from routecast.cascade.cascade_router import CascadeRouter
    from tests.cascade.test_cascade_router import ENC, parts, synthetic

    train, val, test = parts(synthetic(480, hedge=False, seed=3, cheap=0.8))
    cascade = CascadeRouter(router="linear", encoder=ENC, scorer_encoder=ENC, kappas=(1.0,), n_lams=25,
                            lookaheads=("sets",)).fit(train, val)
    pair = 1 << cascade.pool_.index("A") | 1 << cascade.pool_.index("B")
    planners = cascade.planners(test)
    lam = next(float(x) for x in cascade.lams_ if all(p.next_call(0, np.array([x]), 0) == pair for p in planners))
    return cascade, test, lam
