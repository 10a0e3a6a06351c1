"""The torch / preference routers: mlp, mf, sw-ranking, finetuned-encoder.

Fitted on real slices of llmrouter_9models with the hashing encoder. Checks: shape and range,
determinism under the seed, exact state round trips, the masked loss, learning from pairwise
preferences (including the similarity weighting of sw-ranking), that the mlp beats the column
mean on held-out prompts, that prediction never imports Lightning, and the tuner's callbacks.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from routecast.data.outcome_log import OutcomeLog
from routecast.data.preferences import PairwiseLog
from routecast.router.encoders import get_encoder
from routecast.core.registry import get_router_class, make_router

pytestmark = pytest.mark.slow  # every test here trains a torch model or loads Lightning

HASHING = "hashing:dim=256"
FAST_PARAMS = {
    "mlp": {"max_epochs": 20, "hidden_dim": 64},
    "mf": {"epochs": 10, "dim": 32},
    "sw-ranking": {},
}
EMBEDDING_ROUTERS = list(FAST_PARAMS)


def _make(name, **extra):
    return make_router(name, encoder=HASHING, **{**FAST_PARAMS[name], **extra})


def _load_real_log() -> OutcomeLog:
    """All of llmrouter_9models (5,978 prompts x 9 models), built straight from the parquet."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "llmrouter_9models" / "data.parquet"
    if not path.exists():
        pytest.skip(f"shared dataset not found at {path}")
    df = pd.read_parquet(path, columns=["prompt_id", "prompt", "model", "score"])
    scores = df.pivot(index="prompt_id", columns="model", values="score")
    prompts = df.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"].reindex(scores.index)
    n, m = scores.shape
    return OutcomeLog(np.asarray(scores.index, dtype=object), np.asarray(prompts.to_numpy(), dtype=object),
                      tuple(scores.columns), scores.to_numpy(dtype=float), np.full((n, m), np.nan),
                      source=str(path))


@pytest.fixture(scope="module")
def full_log():
    return _load_real_log()


@pytest.fixture(scope="module")
def split300(full_log):
    """(train 240, test 60) seeded slice plus their hashing embeddings."""
    idx = np.random.default_rng(3).choice(full_log.n_prompts, 300, replace=False)
    log = full_log.subset(np.sort(idx))
    X = get_encoder(HASHING).encode(list(log.prompts))
    return log.subset(np.arange(240)), X[:240], log.subset(np.arange(240, 300)), X[240:]


# --------------------------------------------------------------- basics
@pytest.mark.parametrize("name", EMBEDDING_ROUTERS)
def test_fit_predict_shape_range_and_determinism(name, split300):
    train, Xtr, test, Xte = split300
    a = _make(name).fit(train, embeddings=Xtr)
    qa = a.predict_quality(embeddings=Xte)
    assert qa.shape == (test.n_prompts, test.n_models)
    assert np.isfinite(qa).all() and qa.min() >= 0 and qa.max() <= 1
    assert qa.std() > 1e-4, "predictions are constant"
    b = _make(name).fit(train, embeddings=Xtr)
    np.testing.assert_array_equal(b.predict_quality(embeddings=Xte), qa)
    # texts go through the encoder and land on the same numbers as the precomputed embeddings
    np.testing.assert_allclose(a.predict_quality(list(test.prompts)), qa, atol=1e-6)


@pytest.mark.parametrize("name", ["mlp", "mf"])
def test_other_seed_gives_other_model(name, split300):
    train, Xtr, _, Xte = split300
    q0 = _make(name, seed=0).fit(train, embeddings=Xtr).predict_quality(embeddings=Xte)
    q1 = _make(name, seed=1).fit(train, embeddings=Xtr).predict_quality(embeddings=Xte)
    assert np.abs(q0 - q1).max() > 1e-4


@pytest.mark.parametrize("name", EMBEDDING_ROUTERS)
def test_state_round_trip_in_fresh_instance(name, split300):
    train, Xtr, _, Xte = split300
    router = _make(name).fit(train, embeddings=Xtr)
    meta, arrays = router.get_state()
    json.dumps(meta)  # metadata is plain JSON
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values())
    clone = get_router_class(name)(**router.get_params()).set_state(json.loads(json.dumps(meta)), arrays)
    np.testing.assert_array_equal(clone.predict_quality(embeddings=Xte), router.predict_quality(embeddings=Xte))


@pytest.mark.parametrize("name", ["mlp", "mf"])
def test_tampered_weights_are_refused(name, split300):
    from routecast.errors import CheckpointError

    train, Xtr, _, _ = split300
    meta, arrays = _make(name).fit(train, embeddings=Xtr).get_state()
    key = next(k for k in arrays if k.startswith("net.") and arrays[k].ndim == 2)
    bad = dict(arrays, **{key: arrays[key][:, :-1]})
    with pytest.raises(CheckpointError, match="do not match"):
        get_router_class(name)().set_state(meta, bad)


def test_training_leaves_global_torch_state_alone(split300):
    train, Xtr, _, _ = split300
    rng_before = torch.get_rng_state().clone()
    det_before = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    _make("mlp", max_epochs=2).fit(train, embeddings=Xtr)
    _make("mf", epochs=2).fit(train, embeddings=Xtr)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.are_deterministic_algorithms_enabled() == det_before
    assert torch.get_num_threads() == threads


# ----------------------------------------------------------- masked loss
@pytest.mark.parametrize("kind", ["bce", "mse"])
def test_masked_loss_ignores_unlogged_cells(kind):
    from routecast.router.quality_net import masked_quality_loss

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=gen, requires_grad=True)
    target = torch.rand(6, 4, generator=gen)
    target[1, 2] = target[4, 0] = float("nan")
    loss = masked_quality_loss(logits, target, kind)
    loss.backward()
    logged = ~torch.isnan(target)
    p = torch.sigmoid(logits.detach())
    if kind == "bce":
        t = target[logged]
        cells = -(t * torch.log(p[logged]) + (1 - t) * torch.log(1 - p[logged]))
    else:
        cells = (p[logged] - target[logged]) ** 2
    assert torch.isclose(loss, cells.mean(), atol=1e-6)
    assert logits.grad[1, 2] == 0 and logits.grad[4, 0] == 0
    assert (logits.grad[logged] != 0).all()
    # the value of an unlogged cell's logit changes nothing
    moved = logits.detach().clone()
    moved[1, 2] += 50.0
    assert torch.isclose(masked_quality_loss(moved, target, kind), loss.detach())


@pytest.mark.parametrize("name", ["mlp", "mf", "sw-ranking"])
def test_routers_train_on_logs_with_missing_cells(name, split300):
    """An unlogged cell's former value must not matter: two logs that differ only in cells that
    are NaN in both train identical routers, and the routers still predict every model."""
    train, Xtr, _, Xte = split300
    rng = np.random.default_rng(0)
    holes = rng.random(train.scores.shape) < 0.3
    scores = np.where(holes, np.nan, train.scores)
    log = OutcomeLog(train.prompt_ids, train.prompts, train.models, scores, train.costs)
    q = _make(name).fit(log, embeddings=Xtr).predict_quality(embeddings=Xte)
    assert np.isfinite(q).all() and q.shape == (len(Xte), train.n_models)
    full = _make(name).fit(train, embeddings=Xtr).predict_quality(embeddings=Xte)
    assert np.abs(q - full).max() > 1e-4, "the holes were not holes"


# -------------------------------------------------------------- quality
def test_mlp_beats_column_mean_on_held_out_prompts(full_log):
    idx = np.random.default_rng(11).permutation(full_log.n_prompts)[:2500]
    train, test = full_log.subset(idx[:2000]), full_log.subset(idx[2000:])
    X = get_encoder(HASHING).encode(list(full_log.prompts[idx]))
    router = make_router("mlp", encoder=HASHING, hidden_dim=128, max_epochs=40).fit(train, embeddings=X[:2000])
    q = router.predict_quality(embeddings=X[2000:])
    brier_router = float(np.mean((q - test.scores) ** 2))
    brier_mean = float(np.mean((train.mean_scores() - test.scores) ** 2))
    assert brier_router < brier_mean - 0.01, (brier_router, brier_mean)
    assert router.best_epoch_ >= 0 and np.isfinite(router.best_val_loss_)


# ------------------------------------------------------------ preferences
def _pairs(rows):
    """A routecast.data.PairwiseLog from (prompt, model_a, model_b, winner) rows."""
    prompts = [r[0] for r in rows]
    ids = [hashlib.sha1(p.encode()).hexdigest()[:12] for p in prompts]
    return PairwiseLog(prompt_ids=np.array(ids, dtype=object), prompts=np.array(prompts, dtype=object),
                       model_a=np.array([r[1] for r in rows], dtype=object),
                       model_b=np.array([r[2] for r in rows], dtype=object),
                       winner=np.array([r[3] for r in rows], dtype=object))


def _ordered_preferences(n_prompts=40):
    """'strong' > 'mid' > 'weak' on every prompt, with some ties and some upsets."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_prompts):
        text = f"question {i}: explain topic {rng.integers(1000)} in detail"
        rows += [(text, "strong", "weak", "model_a"), (text, "weak", "mid", "model_b"),
                 (text, "mid", "strong", "model_b" if i % 5 else "tie")]
        if i % 7 == 0:
            rows.append((text, "mid", "weak", "tie"))
    return _pairs(rows)


@pytest.mark.parametrize("name", ["mf", "sw-ranking"])
def test_preferences_rank_the_better_model_higher(name):
    pairs = _ordered_preferences()
    params = {"epochs": 60, "dim": 16} if name == "mf" else {}
    router = make_router(name, encoder=HASHING, **params).fit_preferences(
        pairs, costs={"strong": 3e-3, "mid": 1e-3, "weak": 1e-4})
    assert router.models_ == ("mid", "strong", "weak")
    q = router.predict_quality(["question 999: explain topic 5 in detail", "a brand new query"])
    mid, strong, weak = q[:, 0], q[:, 1], q[:, 2]
    assert (strong > mid).all() and (mid > weak).all(), q
    np.testing.assert_allclose(router.costs_, [1e-3, 3e-3, 1e-4])
    assert router.route(["a query"], lam=0).chosen == ["strong"]
    assert router.route(["a query"], lam=1e6).chosen == ["weak"]
    meta, arrays = router.get_state()
    clone = get_router_class(name)(**router.get_params()).set_state(meta, arrays)
    np.testing.assert_array_equal(clone.predict_quality(["a query"]), router.predict_quality(["a query"]))


def test_sw_ranking_weights_comparisons_by_prompt_similarity():
    """'coder' wins on programming prompts, 'poet' wins on poetry prompts: the ranking must flip
    with the query, which only the similarity weighting can do."""
    rows = []
    for i in range(30):
        rows.append((f"write a python function that sorts list number {i} with a loop", "coder", "poet", "model_a"))
        rows.append((f"write a rhyming poem about the moon and the sea, verse {i}", "poet", "coder", "model_a"))
    router = make_router("sw-ranking", encoder=HASHING, gamma=100.0).fit_preferences(_pairs(rows))
    q = router.predict_quality(["write a python function that sorts a list",
                                "write a rhyming poem about the sea"])
    coder, poet = router.models_.index("coder"), router.models_.index("poet")
    assert q[0, coder] > q[0, poet] + 0.1 and q[1, poet] > q[1, coder] + 0.1, q
    flat = make_router("sw-ranking", encoder=HASHING, gamma=1.0 + 1e-9).fit_preferences(_pairs(rows))
    qf = flat.predict_quality(["write a python function that sorts a list"])
    assert abs(qf[0, coder] - qf[0, poet]) < 1e-6  # no weighting: a perfect 30-30 split


def test_preference_log_errors_name_the_row():
    from routecast.errors import DataError

    with pytest.raises(DataError, match="row 2.*winner"):
        _pairs([("q1", "a", "b", "model_a"), ("q2", "a", "b", "draw")])


def test_sw_ranking_from_scores_matches_counted_comparisons():
    from routecast.router.sw_ranking import comparisons_from_scores

    scores = np.array([[1.0, 0.0, np.nan], [0.5, 0.5, 1.0]])
    a, b, counts, wins = comparisons_from_scores(scores)
    assert list(zip(a, b)) == [(0, 1), (0, 2), (1, 2)]
    np.testing.assert_array_equal(counts, [[1, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(wins, [[1, 0, 0], [0.5, 0, 0]])


# --------------------------------------------------- runtime without Lightning
def test_prediction_does_not_import_lightning(split300, tmp_path):
    from safetensors.numpy import save_file

    train, Xtr, _, Xte = split300
    expected = {}
    for name in ("mlp", "mf"):
        router = _make(name).fit(train, embeddings=Xtr)
        meta, arrays = router.get_state()
        (tmp_path / f"{name}.json").write_text(json.dumps({"params": router.get_params(), "state": meta}))
        save_file(arrays, str(tmp_path / f"{name}.safetensors"))
        expected[name] = router.predict_quality(embeddings=Xte)
        np.save(tmp_path / f"{name}_expected.npy", expected[name])
    np.save(tmp_path / "X.npy", Xte)
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from safetensors.numpy import load_file
        from routecast.core.registry import make_router
        root = {str(tmp_path)!r}
        X = np.load(root + "/X.npy", allow_pickle=False)
        for name in ("mlp", "mf"):
            cfg = json.load(open(f"{{root}}/{{name}}.json"))
            router = make_router(name, **cfg["params"]).set_state(cfg["state"], load_file(f"{{root}}/{{name}}.safetensors"))
            q = router.predict_quality(embeddings=X)
            assert np.array_equal(q, np.load(f"{{root}}/{{name}}_expected.npy", allow_pickle=False)), name
        bad = sorted(m for m in sys.modules if m == "lightning" or m.startswith(("pytorch_lightning", "lightning.")))
        print("LIGHTNING:", bad)
        assert not bad
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LIGHTNING: []" in done.stdout


# ------------------------------------------------------------ tuner hooks
def test_fit_with_callbacks_reaches_the_trainer(split300):
    import pytorch_lightning as pl

    class Count(pl.Callback):
        epochs = 0

        def on_train_epoch_end(self, trainer, pl_module):
            Count.epochs += 1

    train, Xtr, _, _ = split300
    router = _make("mlp", max_epochs=3, patience=10)
    router.fit_with_callbacks(train, embeddings=Xtr, callbacks=[Count()])
    assert Count.epochs == 3 and router.epochs_ == 3
    assert not hasattr(router, "_trainer_callbacks")


def test_optuna_pruning_callback_prunes(split300):
    import optuna

    from routecast.router.lightning_module import OptunaPruningCallback

    train, Xtr, _, _ = split300
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=1e-9))
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned):
        _make("mlp", max_epochs=5).fit_with_callbacks(train, embeddings=Xtr,
                                                      callbacks=[OptunaPruningCallback(trial)])
    assert trial.number == 0 and len(study.trials[0].intermediate_values) == 1


# ------------------------------------------------------- finetuned encoder
def test_finetuned_encoder_tiny(split300):
    train, _, test, _ = split300
    small = train.subset(np.arange(64))
    params = dict(base_model="tiny", max_epochs=1, max_seq_length=32, batch_size=16, val_fraction=0.0)
    router = make_router("finetuned-encoder", **params).fit(small)
    texts = list(test.prompts[:12])
    q = router.predict_quality(texts)
    assert q.shape == (12, small.n_models) and q.min() >= 0 and q.max() <= 1
    # heads start at each model's base rate, so a 1-epoch model already tracks the column means
    assert np.corrcoef(q.mean(axis=0), small.mean_scores())[0, 1] > 0.8
    again = make_router("finetuned-encoder", **params).fit(small)
    np.testing.assert_array_equal(again.predict_quality(texts), q)
    meta, arrays = router.get_state()
    assert any(k.startswith("net.encoder.") for k in arrays) and "net.head.weight" in arrays
    clone = make_router("finetuned-encoder", **router.get_params()).set_state(meta, arrays)
    np.testing.assert_array_equal(clone.predict_quality(texts), q)
