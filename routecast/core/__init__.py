"""The kernel every policy shares: the decision rule and its sweep, operating points and the one
knob -> lam resolution, the estimator contract and tags, and the checkpoint format. It knows no
router or cascade type; routers and cascades build on it."""
