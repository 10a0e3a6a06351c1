"""Build the built-in datasets (``routecast/data/builtin/``) from the shared long-format folders.

Run once by a maintainer (the outputs are committed):

    python -m routecast.data.build_builtin [--shared ../shared/data]

What it does, per dataset (also written into each ``<name>.md``):

* ``llmrouter_9models`` (MIT, ulab-uiuc/LLMRouter): all prompts x 9 models; ``cost`` derived from the
  source's per-model list prices (``price_in_per_mtok``/``price_out_per_mtok``, kept) with
  ``tokens_in = ceil(chars/4)`` and ``tokens_out = 256`` (no responses are logged); keeps
  ``benchmark``, ``split``, ``metric``, ``in_both_splits``; drops ``reference``, ``model_api_id``,
  ``model_size``.
* ``routellm_strong_weak`` (Apache-2.0, lm-sys/RouteLLM): GPT-4 Turbo vs Mixtral 8x7B on MMLU,
  GSM8K, MT-Bench; keeps ``benchmark``, ``task``, ``turn``, ``contaminated``; keeps ``response`` only
  for GSM8K; drops references, judge fields, ``prev_turn_prompt``; ``cost`` from the ASSUMED list
  prices gpt-4-1106-preview $10 / $30 and Mixtral-8x7B $0.60 / $0.60 per million input / output
  tokens, tokens estimated as in :mod:`routecast.data.costs`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from routecast.atomic import atomic_path, write_json, write_text
from routecast.data.costs import CHARS_PER_TOKEN, DEFAULT_OUTPUT_TOKENS, PriceTable, estimate_tokens

OUT = Path(__file__).resolve().parent / "builtin"
ROUTELLM_PRICES = {"gpt-4-1106-preview": (10.0, 30.0), "mistralai/Mixtral-8x7B-Instruct-v0.1": (0.60, 0.60)}


def _tokens(df: pd.DataFrame, table: PriceTable) -> tuple[np.ndarray, np.ndarray]:
    t_in = estimate_tokens(df["prompt"].to_numpy(object), chars_per_token=table.chars_per_token)
    if "response" in df.columns:
        t_out = estimate_tokens(df["response"].to_numpy(object), chars_per_token=table.chars_per_token)
    else:
        t_out = np.full(len(df), np.nan)
    t_out = np.where(np.isnan(t_out), float(table.default_output_tokens), t_out)
    return t_in.astype("int64"), t_out.astype("int64")


def _cost(df: pd.DataFrame, table: PriceTable) -> pd.DataFrame:
    t_in, t_out = _tokens(df, table)
    df = df.copy()
    df["tokens_in"], df["tokens_out"] = t_in, t_out
    cost = np.full(len(df), np.nan)
    models = df["model"].to_numpy(object)
    for name in pd.unique(models):
        mask = models == name
        cost[mask] = table.call_cost(name, t_in[mask], t_out[mask])
    df["cost"] = cost
    return df


def build_llmrouter(shared: Path) -> pd.DataFrame:
    df = pd.read_parquet(shared / "llmrouter_9models" / "data.parquet")
    firsts = df.groupby("model", sort=False)[["price_in_per_mtok", "price_out_per_mtok"]].first()
    table = PriceTable({m: (r.price_in_per_mtok, r.price_out_per_mtok) for m, r in firsts.iterrows()})
    df = _cost(df, table)
    keep = ["prompt_id", "prompt", "model", "score", "cost", "tokens_in", "tokens_out", "benchmark", "split",
            "metric", "in_both_splits", "price_in_per_mtok", "price_out_per_mtok"]
    return df[keep]


def build_routellm(shared: Path) -> pd.DataFrame:
    df = pd.read_parquet(shared / "routellm_strong_weak" / "data.parquet")
    df["response"] = df["response"].where(df["benchmark"] == "gsm8k", None)
    df = _cost(df, PriceTable(ROUTELLM_PRICES))
    keep = ["prompt_id", "prompt", "model", "score", "cost", "tokens_in", "tokens_out", "benchmark", "task",
            "turn", "contaminated", "response"]
    return df[keep]


CARDS = {
    "llmrouter_9models": dict(
        licence="MIT", repo="ulab-uiuc/LLMRouter", commit="4e7a796942ce26e9d5f2b93191c7c2585c99c2e3",
        description="9 open LLMs x 14 benchmarks (DC-router example data of LLMRouter)",
        changes=[
            "Converted to routecast long format by the shared-data pipeline (see its README), then:",
            "`cost` (USD per call) derived from the source's numeric per-model list prices "
            "(`price_in_per_mtok`, `price_out_per_mtok`, kept) with `tokens_in = ceil(len(prompt)/4)` and "
            f"`tokens_out = {DEFAULT_OUTPUT_TOKENS}` (the source logs no responses or token counts): an estimate, "
            "not a logged bill.",
            "Kept `benchmark`, `split` (train/test as in the source), `metric`, `in_both_splits` "
            "(114 questions present in both source splits; 228 prompt_ids).",
            "Dropped `reference`, `model_api_id`, `model_size`.",
        ]),
    "routellm_strong_weak": dict(
        licence="Apache-2.0", repo="lm-sys/RouteLLM", commit="0b64fdafe049e596a3f5657c219329f24af24198",
        description="GPT-4 Turbo (strong) vs Mixtral 8x7B (weak) on MMLU, GSM8K, MT-Bench",
        changes=[
            "Converted to routecast long format by the shared-data pipeline (see its README), then:",
            "`cost` (USD per call) from ASSUMED list prices (RouteLLM logs no cost): gpt-4-1106-preview "
            "$10 input / $30 output per million tokens, Mixtral-8x7B-Instruct $0.60 / $0.60. Tokens: "
            "`tokens_in = ceil(len(prompt)/4)`; `tokens_out = ceil(len(response)/4)` for GSM8K (responses "
            f"logged), else {DEFAULT_OUTPUT_TOKENS}. To try other prices: "
            "`routecast.data.costs.reprice(load_log(\"routellm_strong_weak\"), {model: [in, out]})`.",
            "Kept `benchmark`, `task` (MMLU subject / MT-Bench category), `turn` (MT-Bench), `contaminated` "
            "(RouteLLM's own overlap check; exclude when evaluating routers trained on RouteLLM data).",
            "Kept `response` only for GSM8K; dropped `reference`, `prev_turn_prompt`, `judge`, "
            "`judge_score_raw`, `model_role`.",
        ]),
}


def _card(name: str, df: pd.DataFrame) -> str:
    info = CARDS[name]
    per_model = df.groupby("model", sort=False).agg(score=("score", "mean"), cost=("cost", "mean"))
    lines = [f"# {name}", "", info["description"] + ".", "",
             "## Source",
             f"- Repository: `{info['repo']}`, commit `{info['commit']}`",
             f"- Licence of the source repository: {info['licence']}",
             "- Taken from `../shared/data/" + name + "/data.parquet` (routecast shared-data conversion).", "",
             "## Content",
             f"- {len(df):,} rows, {df['prompt_id'].nunique():,} prompts, {df['model'].nunique()} models.",
             f"- Columns: {', '.join('`' + c + '`' for c in df.columns)}.", "",
             "| model | mean score | mean cost (USD/call) |", "|---|---:|---:|"]
    lines += [f"| {m} | {r.score:.3f} | {r.cost:.6f} |" for m, r in per_model.iterrows()]
    lines += ["", "## What was changed", *[f"- {c}" for c in info["changes"]],
              "", f"Built by `python -m routecast.data.build_builtin` (chars per token {CHARS_PER_TOKEN}).", ""]
    return "\n".join(lines)


def build(shared: Path, out: Path = OUT) -> dict:
    builders = {"llmrouter_9models": build_llmrouter, "routellm_strong_weak": build_routellm}
    catalog = {}
    for name, fn in builders.items():
        df = fn(shared)
        with atomic_path(out / f"{name}.parquet") as tmp:
            df.to_parquet(tmp, index=False, compression="zstd", compression_level=19)
        write_text(out / f"{name}.md", _card(name, df))
        catalog[name] = {"prompts": int(df["prompt_id"].nunique()), "models": int(df["model"].nunique()),
                         "rows": int(len(df)), "licence": CARDS[name]["licence"],
                         "source": f"{CARDS[name]['repo']}@{CARDS[name]['commit'][:12]}",
                         "description": CARDS[name]["description"]}
        print(f"{name}: {len(df)} rows -> {(out / f'{name}.parquet').stat().st_size / 1e6:.2f} MB")
    write_json(out / "catalog.json", catalog)
    return catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    args = parser.parse_args()
    print(json.dumps(build(args.shared), indent=2))


if __name__ == "__main__":
    main()
