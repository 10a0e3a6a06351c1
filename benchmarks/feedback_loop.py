"""The feedback loop end to end: real traffic through ``routecast serve``, feedback from logged
scores, off-policy evaluation and retraining on the decision log, and sticky conversations.

Set-up (all on 127.0.0.1): a knn router (the logging policy) trained on ``--n-logger`` prompts of
routellm_strong_weak is exported and served by ``routecast serve`` in a subprocess with
``--decision-log --log-text`` and ``--explore EPS``; fake OpenAI-compatible backends
(tests/_support/fake_backend.py) answer every model; the official ``openai`` client sends
``--n-traffic`` other prompts as chats; each answer's score is the dataset's logged score of the
model that answered, sent back with ``POST /v1/feedback``. The full prompt x model matrix of
those prompts is the ground truth.

(a) Coverage: for two candidate routers (not the logging one) the IPS / SNIPS / DR estimates of
their mean quality on the traffic, with 95 % intervals, against the true mean from the full
matrix. 50 seeded runs reuse the served traffic log of each exploration rate (its prompts and the
logging router's predicted qualities, as logged) and re-draw the exploration offline with seeded
uniforms through the same rule the server uses (routecast.core.policy.explore); a full server
pass per seed would take 50x as long and exercise nothing new.

(b) Learning from your own traffic: a linear router retrained on each decision log (bandit
feedback, inverse-propensity weighted) at exploration rates 0, 0.05 and 0.2, against the same
router trained on the full matrix of the same prompts: AIQ on held-out prompts, with paired
bootstrap intervals of the difference.

Sticky routing: MT-Bench's two-turn conversations of routellm_strong_weak (meta ``turn``; the
second turn is sent with the first turn and an assistant answer before it, the conversation id in
``user``), served with and without stickiness: the share of conversations whose two turns went to
different models.

    .venv/bin/python benchmarks/feedback_loop.py [--n-traffic 1000] [--seeds 50]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from routecast.atomic import write_json, write_text  # noqa: E402

DATA = "routellm_strong_weak"
ENCODER = "static"
RATES = (0.0, 0.05, 0.2)


def split(log, n_logger: int, n_traffic: int, n_test: int, seed: int):
    """Disjoint prompt sets (MT-Bench kept apart for the sticky part)."""
    bench = log.meta["benchmark"].to_numpy()
    pool = np.flatnonzero((bench != "mt_bench") & log.complete_rows())
    rng = np.random.default_rng(seed)
    picked = rng.choice(pool, size=n_logger + n_traffic + n_test, replace=False)
    return (np.sort(picked[:n_logger]), np.sort(picked[n_logger:n_logger + n_traffic]),
            np.sort(picked[n_logger + n_traffic:]))


def serve_traffic(ckpt: Path, prompts: list[str], truth: np.ndarray, models: tuple[str, ...], backends: Path,
                  flags: list[str], log_path: Path | None) -> dict:
    """Send every prompt as a chat through a real server; return request id -> (prompt index, model)."""
    import httpx
    from openai import OpenAI
    from serving import _Server

    extra = ["--decision-log", str(log_path), "--log-text"] if log_path is not None else []
    served: dict[str, tuple[int, str]] = {}
    with _Server(ckpt, ["--backends", str(backends), *flags, *extra]) as server:
        client = OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=30)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for i, text in enumerate(prompts):
                raw = client.chat.completions.with_raw_response.create(
                    model="router", messages=[{"role": "user", "content": text}])
                rid, model = raw.headers["x-routecast-request-id"], raw.headers["x-routecast-model"]
                served[rid] = (i, model)
                if log_path is not None:
                    r = http.post("/v1/feedback", json={"request_id": rid,
                                                        "score": float(truth[i, models.index(model)])})
                    assert r.status_code == 200, r.text
    return served


def sticky_share(ckpt: Path, log, backends: Path, flags: list[str]) -> dict:
    """Share of MT-Bench two-turn conversations whose turns went to different models."""
    from openai import OpenAI
    from serving import _Server

    meta = log.meta
    ids = np.asarray(log.prompt_ids, dtype=object)
    turns: dict[str, dict[int, str]] = {}
    for i in np.flatnonzero(meta["benchmark"].to_numpy() == "mt_bench"):
        question = str(ids[i]).split("/")[1]
        turns.setdefault(question, {})[int(meta["turn"].iloc[i])] = str(log.prompts[i])
    conversations = [(q, t[1], t[2]) for q, t in sorted(turns.items()) if 1 in t and 2 in t]
    switched = 0
    with _Server(ckpt, ["--backends", str(backends), *flags]) as server:
        client = OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=30)
        for q, first, second in conversations:
            one = client.chat.completions.with_raw_response.create(
                model="router", user=f"mt-{q}", messages=[{"role": "user", "content": first}])
            answer = one.parse().choices[0].message.content
            two = client.chat.completions.with_raw_response.create(
                model="router", user=f"mt-{q}", messages=[{"role": "user", "content": first},
                                                          {"role": "assistant", "content": answer},
                                                          {"role": "user", "content": second}])
            switched += one.headers["x-routecast-model"] != two.headers["x-routecast-model"]
    return {"conversations": len(conversations), "switched": switched,
            "switch_share": switched / max(1, len(conversations))}


def coverage(bandit, traffic_idx_of_row, full, full_cost, costs, lam, eps, candidates, seeds, n_boot):
    """IPS/SNIPS/DR 95 % interval coverage of each candidate's true mean quality over seeded re-draws."""
    from routecast.evaluation.off_policy import off_policy_estimates
    from routecast.core.policy import decide, explore

    models = list(bandit.models)
    logged_q = bandit.meta[[f"predicted_{m}" for m in models]].to_numpy(dtype=float)
    rows = np.arange(len(traffic_idx_of_row))
    scores, cost_matrix = full[traffic_idx_of_row], full_cost[traffic_idx_of_row]
    out = {}
    for name, quality in candidates.items():
        target = decide(quality, costs, lam)
        true_q = float(scores[rows, target].mean())
        hits = {"ips": 0, "snips": 0, "dr": 0}
        widths = {k: [] for k in hits}
        for seed in range(seeds):
            u = np.random.default_rng(1000 + seed).random(len(rows))
            choice, propensity = explore(logged_q, costs, lam, epsilon=eps, uniforms=u)
            est = off_policy_estimates(target, choice, propensity, scores[rows, choice], cost_matrix[rows, choice],
                                       reward_model=quality, cost_model=np.broadcast_to(costs, quality.shape),
                                       n_models=len(models), n_boot=n_boot, seed=seed)
            for k in hits:
                lo, hi = est.quality_ci[k]
                hits[k] += lo <= true_q <= hi
                widths[k].append(hi - lo)
        out[name] = {"true_quality": true_q, "match_rate_with_logger": float(np.mean(target == decide(
            logged_q, costs, lam))), **{f"coverage_{k}": hits[k] / seeds for k in hits},
            **{f"mean_ci_width_{k}": float(np.mean(widths[k])) for k in hits}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-logger", type=int, default=600)
    parser.add_argument("--n-traffic", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    from routecast.data import load_log
    from routecast.data.decision_log import outcome_log_from_decisions
    from routecast.core.checkpoint import save_checkpoint
    from routecast.evaluation.evaluate import aiq_difference, evaluate, sweep_router
    from routecast.core.registry import make_router
    from tests._support.fake_backend import FakeBackend

    started = time.time()
    log = load_log(DATA)
    logger_idx, traffic_idx, test_idx = split(log, args.n_logger, args.n_traffic, args.n_test, seed=0)
    logger_log, traffic_log, test_log = log.subset(logger_idx), log.subset(traffic_idx), log.subset(test_idx)
    models = tuple(log.models)
    logging_router = make_router("knn", k=30, encoder=ENCODER).fit(logger_log)
    lam = float(logging_router.route(list(logger_log.prompts), strong_share=0.5).lam)
    costs = np.asarray(logging_router.costs_, dtype=float)
    results: dict = {"data": DATA, "encoder": ENCODER, "logging_router": "knn k=30", "lam": lam,
                     "n_logger": len(logger_idx), "n_traffic": len(traffic_idx), "n_test": len(test_idx),
                     "seeds": args.seeds, "platform": platform.platform(), "served": {}}
    candidates = {
        "knn k=5": make_router("knn", k=5, encoder=ENCODER).fit(logger_log),
        "linear": make_router("linear", encoder=ENCODER).fit(logger_log),
    }
    traffic_prompts = list(traffic_log.prompts)
    candidate_q = {name: r.predict_quality(traffic_prompts) for name, r in candidates.items()}

    fake = FakeBackend("fake")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = save_checkpoint(logging_router, tmp / "ckpt")
        backends = tmp / "backends.json"
        backends.write_text(json.dumps({"backends": {"*": {"base_url": fake.base_url, "timeout": 30}}}))
        bandits = {}
        for eps in RATES:
            path = tmp / f"decisions-{eps}.sqlite"
            t0 = time.time()
            served = serve_traffic(ckpt, traffic_prompts, traffic_log.scores, models, backends,
                                   ["--lam", repr(lam), "--explore", repr(eps)], path)
            bandit = outcome_log_from_decisions(path)
            row_idx = np.array([served[rid][0] for rid in bandit.prompt_ids])
            bandits[eps] = (bandit, row_idx)
            chosen = bandit.meta["chosen"].to_numpy()
            results["served"][str(eps)] = {"requests": len(served), "seconds": round(time.time() - t0, 1),
                                           "strong_share": float(np.mean(chosen == models[1])),
                                           "min_propensity": float(bandit.meta["propensity"].min()),
                                           "logged_quality": float(np.nanmax(bandit.scores, axis=1).mean())}
            print(f"served eps={eps}: {results['served'][str(eps)]}", flush=True)
        sticky = {"on (sticky_margin 0.05)": sticky_share(ckpt, log, backends, ["--lam", repr(lam)])}
        sticky["on (sticky_margin 0.2)"] = sticky_share(ckpt, log, backends, ["--lam", repr(lam), "--sticky-margin",
                                                                               "0.2"])
        off = tmp / "no-sticky.yaml"
        off.write_text("sticky_margin: null\n")
        sticky["off"] = sticky_share(ckpt, log, backends, ["--lam", repr(lam), "--config", str(off)])
        results["sticky"] = sticky
        print(f"sticky: {sticky}", flush=True)
    fake.stop()

    # (a) coverage on the served traffic of each exploring rate
    results["coverage"] = {}
    for eps in RATES[1:]:
        bandit, row_idx = bandits[eps]
        q = {name: quality[row_idx] for name, quality in candidate_q.items()}
        results["coverage"][str(eps)] = coverage(bandit, row_idx, traffic_log.scores, traffic_log.costs, costs, lam,
                                                 eps, q, args.seeds, args.n_boot)
        print(f"coverage eps={eps}: {results['coverage'][str(eps)]}", flush=True)

    # (b) retrained on the decision logs vs the full matrix of the same prompts
    curves = {"linear, full matrix": sweep_router(make_router("linear", encoder=ENCODER).fit(traffic_log), test_log,
                                                  label="linear, full matrix")}
    for eps in RATES:
        label = f"linear, decision log eps={eps}"
        curves[label] = sweep_router(make_router("linear", encoder=ENCODER).fit(bandits[eps][0]), test_log,
                                     label=label)
    evaluation = evaluate(curves, test_log, n_boot=args.n_boot, seed=0)
    results["aiq"] = {}
    for label, score in evaluation.routers.items():
        row = {"aiq": score.aiq, "aiq_ci": list(score.aiq_ci)}
        if label != "linear, full matrix" and label in curves:
            diff, ci = aiq_difference(evaluation, label, "linear, full matrix")
            row.update(diff_vs_full=diff, diff_ci=list(ci))
        results["aiq"][label] = row
    results["cost_range"] = list(evaluation.cost_range)
    results["seconds"] = round(time.time() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "feedback_loop.json", results)
    write_text(args.out / "feedback_loop.md", to_markdown(results))
    print(to_markdown(results))


def to_markdown(r: dict) -> str:
    lines = [f"# Feedback loop ({r['data']}, encoder {r['encoder']})", "",
             f"Logging router {r['logging_router']} trained on {r['n_logger']} prompts, served by `routecast serve` "
             f"(subprocess, 127.0.0.1) at lam {r['lam']:.4g} (50 % strong calls on its training prompts); "
             f"{r['n_traffic']} other prompts sent as chats with the official openai client to fake backends; "
             "feedback = the dataset's logged score of the answering model via POST /v1/feedback. "
             f"{r['seconds']} s in all on {r['platform']}.", "",
             "| exploration | requests | s | strong share | min propensity |", "|---:|---:|---:|---:|---:|"]
    for eps, s in r["served"].items():
        lines.append(f"| {eps} | {s['requests']} | {s['seconds']} | {s['strong_share']:.3f} | {s['min_propensity']:.3f} |")
    lines += ["", f"## (a) Coverage of the 95 % intervals ({r['seeds']} seeded re-draws of the exploration on each "
              "served traffic log)", "",
              "| exploration | candidate | true quality | agrees with logger | IPS | SNIPS | DR | mean width IPS / DR |",
              "|---:|---|---:|---:|---:|---:|---:|---|"]
    for eps, cands in r["coverage"].items():
        for name, c in cands.items():
            lines.append(f"| {eps} | {name} | {c['true_quality']:.4f} | {c['match_rate_with_logger']:.1%} | "
                         f"{c['coverage_ips']:.0%} | {c['coverage_snips']:.0%} | {c['coverage_dr']:.0%} | "
                         f"{c['mean_ci_width_ips']:.3f} / {c['mean_ci_width_dr']:.3f} |")
    lo, hi = r["cost_range"]
    lines += ["", f"## (b) AIQ on {r['n_test']} held-out prompts (cost range {lo:.3g}-{hi:.3g} USD)", "",
              "| router | AIQ [95 % CI] | minus full matrix [paired 95 % CI] |", "|---|---:|---:|"]
    for label, a in r["aiq"].items():
        diff = (f"{a['diff_vs_full']:+.4f} [{a['diff_ci'][0]:+.4f}, {a['diff_ci'][1]:+.4f}]"
                if "diff_vs_full" in a else "")
        lines.append(f"| {label} | {a['aiq']:.4f} [{a['aiq_ci'][0]:.4f}, {a['aiq_ci'][1]:.4f}] | {diff} |")
    lines += ["", "## Sticky routing (MT-Bench two-turn conversations)", "",
              "| stickiness | conversations | switched models | share |", "|---|---:|---:|---:|"]
    for name, s in r["sticky"].items():
        lines.append(f"| {name} | {s['conversations']} | {s['switched']} | {s['switch_share']:.1%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
