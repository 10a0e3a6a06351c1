"""What a shadow checkpoint costs a request: p50 latency of ``POST /v1/route`` with and without
``routecast serve --shadow CKPT``.

Two ``routecast serve`` processes on 127.0.0.1 serve the same live checkpoint (a ``linear``
router, static encoder, fitted on llmrouter_9models like benchmarks/serving.py), both with
``--decision-log --log-text`` (a shadow needs the log); one also runs a candidate (``knn``, same
encoder) as its shadow. One prompt per request, one request in flight, requests alternating
between the two servers so both see the same machine load; ``--rounds`` rounds of
``--requests`` requests, the added p50 is the median over rounds of p50(shadow) - p50(off). The
target is at most 0.5 ms. Writes benchmarks/results/shadow.{json,md}.

    nice -n 5 .venv/bin/python benchmarks/shadow.py [--requests 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from routecast.atomic import write_json, write_text  # noqa: E402
from serving import _Server, build_checkpoint, eval_prompts  # noqa: E402

TARGET_MS = 0.5


def latencies(client, prompts: list[str]) -> list[float]:
    out = []
    for prompt in prompts:
        start = time.perf_counter()
        r = client.post("/v1/route", json={"prompt": prompt})
        out.append((time.perf_counter() - start) * 1000)
        assert r.status_code == 200, r.text
    return out


def to_markdown(r: dict) -> str:
    lines = ["# Shadow routing: added latency per /v1/route request", "",
             f"Live: {r['live']}; shadow: {r['shadow']}; {r['requests']} one-prompt requests per round and server, "
             f"one in flight, alternating; {r['rounds']} rounds. Target: added p50 <= {TARGET_MS} ms.", "",
             "| round | p50 off (ms) | p50 shadow (ms) | added (ms) |", "|---|---|---|---|"]
    for i, row in enumerate(r["per_round"]):
        lines.append(f"| {i + 1} | {row['p50_off']:.3f} | {row['p50_shadow']:.3f} | {row['added']:+.3f} |")
    lines += ["", f"Median added p50: **{r['added_p50_ms']:+.3f} ms** "
              f"({'meets' if r['added_p50_ms'] <= TARGET_MS else 'misses'} the target). "
              f"{r['seconds']} s on {r['machine']}.", ""]
    return "\n".join(lines)


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for flag, default in (("--requests", 1000), ("--rounds", 3), ("--n-train", 2000)):
        parser.add_argument(flag, type=int, default=default)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        live = build_checkpoint("linear", "static", args.n_train, tmp / "live")
        candidate = build_checkpoint("knn", "static", args.n_train, tmp / "candidate")
        prompts = eval_prompts(args.requests)
        logged = ["--decision-log", str(tmp / "off.sqlite"), "--log-text"]
        shadowed = ["--decision-log", str(tmp / "on.sqlite"), "--log-text", "--shadow", str(candidate)]
        rounds = []
        with _Server(live, logged) as off, _Server(live, shadowed) as on, \
                httpx.Client(base_url=off.url) as c_off, httpx.Client(base_url=on.url) as c_on:
            latencies(c_off, prompts[:50]), latencies(c_on, prompts[:50])  # warm-up
            for _ in range(args.rounds):
                t_off, t_on = [], []
                for prompt in prompts:
                    t_off += latencies(c_off, [prompt])
                    t_on += latencies(c_on, [prompt])
                p_off, p_on = float(np.median(t_off)), float(np.median(t_on))
                rounds.append({"p50_off": round(p_off, 4), "p50_shadow": round(p_on, 4),
                               "added": round(p_on - p_off, 4)})
                print(rounds[-1], flush=True)
    added = round(float(np.median([r["added"] for r in rounds])), 4)
    report = to_markdown({"live": "linear (static encoder)", "shadow": "knn (static encoder)",
                          "requests": args.requests, "rounds": args.rounds, "per_round": rounds, "added_p50_ms": added,
                          "seconds": round(time.time() - started, 1), "machine": platform.platform()})
    write_text(args.out / "shadow.md", report)
    write_json(args.out / "shadow.json", {"added_p50_ms": added, "per_round": rounds, "requests": args.requests,
                                          "report": report})
    print(report)


if __name__ == "__main__":
    main()
