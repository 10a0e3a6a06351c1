"""Cascades (ex-ante and ex-post deferral) vs single models and post-hoc ensembles.

    nice -n 5 .venv/bin/python benchmarks/cascades.py [--encoder hashing:dim=256|minilm] [--datasets a,b]

Question answered per dataset: does a cascade reach the best single model's test quality at
<= 50% of that model's cost? Two answers are reported (see routecast/cascade/evaluation.py):

* val-matched (honest): thresholds picked on the validation split to reach the best single
  model's validation quality at the lowest cost, applied unchanged to the test split;
* hull (optimistic): cheapest point of the cascade's test-curve hull reaching the best model's
  test quality (the evaluation package's ``cost_to_match_best``).

Costs. routerarena_2models has logged USD costs. The other logs have none, so costs are derived
from the per-model list prices below (USD per million input / output tokens) and token counts
estimated as ceil(chars / 4) of the prompt and of the model's logged response
(routecast.data.costs.derive_costs, via load_log(prices=...)). Prices are the providers' public
list prices at the time the models were current (OpenAI, Anthropic) or typical hosted prices
for open models of that size (Together-style: ~$0.06 1B, $0.2 7-8B, $0.3 13B, $0.6 Mixtral,
$0.8 33B, $0.9 70B); PaLM-2 chat-bison's $0.0005/1k characters is taken as $2/M tokens. They are
assumptions, not logged bills: ratios between models matter, absolute values do not.

Splits: seeded random 50/20/30 (train/val/test) by prompt, seed 0. Chain search (max 3 models,
cost-ordered, AIQ on validation) for logs with more than two models; the two-model logs use the
cheap -> expensive chain. Agreement deferral is not benchmarked: it needs >= 3 models with
extractable final answers, which none of these logs offers (open-ended judge-scored answers or
two-model logs).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path("/work/shared/data")
sys.path.insert(0, str(REPO))

#: USD per million tokens (input, output); see the module docstring for where they come from
PRICES = {
    # arena_bench_v1
    "gpt-4-1106-preview": (10.0, 30.0), "gpt-4-0314": (30.0, 60.0), "gpt-3.5-turbo": (1.5, 2.0),
    "gpt-3.5-turbo-1106": (1.0, 2.0), "mistralai/Mixtral-8x7B-Instruct-v0.1": (0.6, 0.6),
    "claude-2.1": (8.0, 24.0), "claude-1": (8.0, 24.0), "claude-instant-1": (0.8, 2.4),
    "Starling-LM-7B-alpha": (0.2, 0.2), "openchat_3.5": (0.2, 0.2), "vicuna-33b-v1.3": (0.8, 0.8),
    "Llama-2-70b-chat": (0.9, 0.9), "mistralai/Mistral-7B-Instruct-v0.1": (0.2, 0.2),
    "palm-2-chat-bison-001": (2.0, 2.0), "llama-13b": (0.3, 0.3),
    # alpaca_eval subset
    "gpt4_1106_preview": (10.0, 30.0), "claude-2": (8.0, 24.0), "vicuna-13b-v1.5": (0.3, 0.3),
    "FuseChat-Llama-3.2-1B-Instruct": (0.06, 0.06),
}
ALPACA_MODELS = ["FuseChat-Llama-3.2-1B-Instruct", "vicuna-13b-v1.5", "gpt-3.5-turbo-1106", "claude-2",
                 "gpt4_1106_preview"]

#: label -> (path, load_log kwargs, meta filter (column, value) or None, note)
DATASETS = {
    "routerarena_2models": (SHARED / "routerarena_2models" / "data.parquet", {}, None,
                            "logged USD costs; 809 prompts, 2 models"),
    "arena_bench_v1": (SHARED / "arena_bench_v1" / "data.parquet", {"prices": PRICES}, None,
                       "15 models, judge 1-10 rescaled; cost = list price x chars/4 tokens; 300 prompts"),
    "alpaca_eval_gpt4turbo_judge": (SHARED / "alpaca_eval_gpt4turbo_judge" / "data.parquet",
                                    {"prices": PRICES, "models": ALPACA_MODELS}, None,
                                    "5 systems spanning cost; score = P(beats GPT-4 Turbo) (gpt4_1106_preview is "
                                    "the judge's own baseline: 0.5 on every prompt); cost = list price x chars/4"),
    "routellm_gsm8k": (SHARED / "routellm_strong_weak" / "data.parquet", {"prices": PRICES}, ("benchmark", "gsm8k"),
                       "GSM8K part (1,319 prompts, responses), GPT-4 Turbo vs Mixtral; cost = list price x chars/4"),
}


def load(label: str):
    from routecast.data.loaders import load_log

    path, kwargs, where, note = DATASETS[label]
    log = load_log(str(path), **kwargs)
    if where is not None:
        column, value = where
        log = log.subset(np.flatnonzero(log.meta[column].astype(str).to_numpy() == value))
    return log, note


def split(log, seed: int = 0):
    order = np.random.default_rng(seed).permutation(log.n_prompts)
    a, b = int(0.5 * log.n_prompts), int(0.7 * log.n_prompts)
    return log.subset(order[:a]), log.subset(order[a:b]), log.subset(order[b:])


def build_cascades(train, val, encoder: str, deferrals: list[str]) -> tuple[dict, dict]:
    from routecast.cascade.cascade import Cascade, search_chains

    cascades, timings = {}, {}
    for deferral in deferrals:
        t0 = time.perf_counter()
        params = {"deferral": deferral, "router": "knn", "encoder": encoder}
        if train.n_models > 2:
            found = search_chains(train, val, max_len=3, **params)
            cascade = found.best
        else:
            cascade = Cascade(**params).fit(train, val)
        label = f"cascade {deferral}"
        cascades[label] = cascade
        timings[label] = time.perf_counter() - t0
    return cascades, timings


def summarise(label: str, note: str, comparison, timings: dict, n: dict) -> dict:
    r = comparison.result
    best = r.best_single_model
    best_q, best_c = r.single_models[best]["quality"], r.single_models[best]["cost"]
    board = {row["label"]: row for row in r.leaderboard()}
    rows = []
    for name, row in board.items():
        facts = comparison.cascades.get(name, {})
        honest = facts.get("match_best_on_test")
        rows.append({
            "policy": name, "family": row["family"], "chain": facts.get("chain"),
            "aiq": row["aiq"], "aiq_ci": row["aiq_ci"], "max_quality": row["max_quality"],
            "min_cost": row["min_cost"], "hull_cost_ratio_to_best": row["cost_ratio_to_best"],
            "val_matched_quality": None if not honest else honest["quality"],
            "val_matched_cost_ratio": None if not honest else honest["cost_ratio_to_best"],
            "val_matched_stop_shares": None if not honest else honest["stop_shares"],
            "half_cost_quality": (facts.get("half_best_cost_on_test") or {}).get("quality"),
            "half_cost_cost_ratio": (facts.get("half_best_cost_on_test") or {}).get("cost_ratio_to_best"),
            "aiq_gain_vs_zero_router": row["aiq_gain"],
            "fit_seconds": timings.get(name),
        })
    verdicts = {}
    for name, facts in comparison.cascades.items():
        honest = facts.get("match_best_on_test")
        hull_ratio = board[name]["cost_ratio_to_best"]
        verdicts[name] = {
            "val_matched": bool(honest and honest["quality"] >= best_q - 1e-12 and honest["cost_ratio_to_best"] <= 0.5),
            "hull": bool(hull_ratio is not None and hull_ratio <= 0.5),
        }
    return {"dataset": label, "note": note, "prompts": n, "best_single": best, "best_single_quality": best_q,
            "best_single_cost": best_c, "oracle_quality": r.oracle_quality, "zero_router_aiq": r.zero_router_aiq, "cost_unit": r.cost_unit,
            "rows": rows, "reaches_best_at_half_cost": verdicts, "notes": comparison.notes}


def markdown(results: list[dict], encoder: str) -> str:
    out = ["# Cascades vs single models and ensembles", "",
           f"Encoder: `{encoder}` (ex-ante router: knn on prompt embeddings; ex-post scorer: logistic head on "
           "`prompt [SEP] response` embeddings + length/final-answer features). Seeded 50/20/30 split. "
           "Cost: mean USD per query (derived from list prices where not logged - see benchmarks/cascades.py). "
           "`val-matched` = thresholds chosen on validation to match the best single model's validation "
           "quality, applied to test (what a deployment sees); `hull x` = cheapest test-hull point reaching the "
           "best model's test quality, as a multiple of its cost (optimistic). Single models and ensembles call "
           "what their name says; ensembles pay for every model.", ""]
    for res in results:
        out += [f"## {res['dataset']}", "", res["note"] + ".", "",
                f"Prompts train/val/test: {res['prompts']['train']}/{res['prompts']['val']}/{res['prompts']['test']}"
                f" (test rows with every score logged: {res['prompts']['test_complete']}). Best single model on "
                f"test: **{res['best_single']}** (quality {res['best_single_quality']:.4f}, cost "
                f"${res['best_single_cost']:.3g}); oracle {res['oracle_quality']:.4f}.", "",
                f"Zero-router AIQ (random mixing of single models): {res['zero_router_aiq']:.4f}.", "",
                "| policy | family | AIQ [95% CI] | vs zero | max quality | min cost | hull x | val-matched quality | "
                "val-matched cost x | quality at 50% budget (cost x) | chain |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for row in res["rows"]:
            lo, hi = row["aiq_ci"]
            out.append(
                f"| {row['policy']} | {row['family']} | {_f(row['aiq'])} [{_f(lo)}, {_f(hi)}] | "
                f"{_f(row['aiq_gain_vs_zero_router'], '+.4f')} | "
                f"{_f(row['max_quality'])} | {_f(row['min_cost'], '.3g')} | {_x(row['hull_cost_ratio_to_best'])} | "
                f"{_f(row['val_matched_quality'])} | {_x(row['val_matched_cost_ratio'], '—')} | "
                f"{_half(row)} | "
                f"{' → '.join(row['chain']) if row['chain'] else ''} |")
        verdict = "; ".join(f"{k}: val-matched {'YES' if v['val_matched'] else 'no'}, hull {'YES' if v['hull'] else 'no'}"
                            for k, v in res["reaches_best_at_half_cost"].items())
        out += ["", f"Reaches the best single model's quality at <= 50% of its cost? {verdict}.", ""]
        out += [f"- {n}" for n in res["notes"]]
        out.append("")
    return "\n".join(out)


def _f(x, spec: str = ".4f") -> str:
    return "—" if x is None else format(x, spec)


def _x(x, none: str = "never") -> str:
    return none if x is None else f"{x:.2f}x"


def _half(row: dict) -> str:
    if row["half_cost_quality"] is None:
        return "—"
    return f"{row['half_cost_quality']:.4f} ({row['half_cost_cost_ratio']:.2f}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="hashing:dim=256")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--deferrals", default="ex-ante,ex-post")
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--out", default=str(HERE / "results" / "cascades"))
    args = parser.parse_args()

    from routecast.atomic import write_json, write_text
    from routecast.cascade.evaluation import compare, complete

    results = []
    for label in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        t0 = time.perf_counter()
        log, note = load(label)
        train, val, test = split(log)
        cascades, timings = build_cascades(train, val, args.encoder, args.deferrals.split(","))
        comparison = compare(train, val, test, cascades, scorer_encoder=args.encoder, n_boot=args.n_boot)
        n = {"train": train.n_prompts, "val": val.n_prompts, "test": test.n_prompts,
             "test_complete": complete(test).n_prompts}
        res = summarise(label, note, comparison, timings, n)
        res["seconds"] = time.perf_counter() - t0
        results.append(res)
        print(f"{label}: {res['reaches_best_at_half_cost']} ({res['seconds']:.0f}s)", flush=True)
        # written after every dataset, so a long (MiniLM) run keeps what it finished
        payload = {"encoder": args.encoder, "split": "random 50/20/30 by prompt, seed 0",
                   "prices_usd_per_mtok": PRICES, "datasets": results}
        write_json(args.out + ".json", payload)
        write_text(args.out + ".md", markdown(results, args.encoder))
    print(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
