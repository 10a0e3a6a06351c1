"""Cost-quality evaluation of routing policies: curves, hulls, AIQ / APGR / CPT, bootstrap
intervals, the report and its plots.

It lives in the router layer, below cascades and training, so routers, cascades, calibration,
tuning and the leaderboard all measure a policy with the same code.
"""
