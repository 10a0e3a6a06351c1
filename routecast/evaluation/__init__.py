"""Cost-quality evaluation of routing policies: curves, hulls, AIQ / APGR / CPT, bootstrap
intervals, priors, the report and its plots, pairwise and off-policy estimates.

It sits below routers and cascades (it imports only the kernel and the data layer), so routers,
cascades, calibration, tuning and the leaderboard all measure a policy with the same code.
"""
