"""RouterDC's dual contrastive loss in ``finetuned-encoder`` (routecast.router.dual_contrastive).

The loss is checked against a hand computation on 3 queries x 3 models (ties, an unlogged cell,
a query alone in its cluster); fitting uses the random 2-layer ``tiny`` BERT on a real slice of
llmrouter_9models: the training loss falls, the checkpoint round trip is exact (and stores no
k-means centroids), bad hyperparameters fail in one line naming the parameter.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from routecast.errors import ConfigError
from routecast.router.dual_contrastive import (DualContrastiveObjective, next_in_cluster, sample_llm_loss,
                                               sample_sample_loss, slot_weights)
from routecast.router.quality_net import masked_quality_loss
from routecast.core.registry import make_router

NAN = float("nan")
#: 3 queries x 3 models: q0 a strict order, q1 one winner and two tied losers, q2 a tie and an unlogged cell
SCORES = torch.tensor([[1.0, 0.0, 0.5], [1.0, 0.0, 0.0], [1.0, 1.0, NAN]])
#: unit-norm query embeddings, so cos(h_i, e_j) = h_ij with identity model keys
H = torch.tensor([[0.6, 0.0, 0.8], [0.0, 0.6, 0.8], [1.0, 0.0, 0.0]])
CLUSTERS = torch.tensor([0, 0, 1])
T = 0.5


def _nll(pos: float, negatives: list[tuple[float, float]]) -> float:
    """-log(e^pos / (e^pos + sum w e^neg)) for (weight, neg) pairs."""
    return -math.log(math.exp(pos) / (math.exp(pos) + sum(w * math.exp(n) for w, n in negatives)))


def test_slot_weights_share_ties_and_skip_unlogged_cells():
    top = slot_weights(SCORES, 2, largest=True)
    bottom = slot_weights(SCORES, 1, largest=False)
    np.testing.assert_allclose(top.numpy(), [[1, 0, 1], [1, 0.5, 0.5], [1, 1, 0]])
    np.testing.assert_allclose(bottom.numpy(), [[0, 1, 0], [0, 0.5, 0.5], [0.5, 0.5, 0]])
    everything_missing = torch.full((1, 3), NAN)
    assert slot_weights(everything_missing, 2, largest=True).sum() == 0


def test_next_in_cluster_is_the_next_row_of_the_same_cluster_cyclically():
    assert next_in_cluster(torch.tensor([0, 0, 1])).tolist() == [1, 0, -1]
    assert next_in_cluster(torch.tensor([2, 1, 2, 2])).tolist() == [2, -1, 3, 0]
    assert next_in_cluster(torch.tensor([4])).tolist() == [-1]


def test_dual_contrastive_loss_equals_a_hand_computation():
    z = H / T  # cos / temperature = [[1.2, 0, 1.6], [0, 1.2, 1.6], [2, 0, 0]]
    # sample-LLM, top_k=2, last_k=1:
    #  q0: positives m0 (1) and m2 (0.5), negative m1 (0): both positives beat it
    #  q1: positive m0; m1 and m2 tie for the one negative slot (weight 1/2 each); the tied m1/m2
    #      share the second positive slot but no model is worse than them: no term
    #  q2: m0 and m1 tie, m2 unlogged: nothing is strictly worse than a positive: q2 does not count
    q0 = _nll(1.2, [(1, 0.0)]) + _nll(1.6, [(1, 0.0)])
    q1 = _nll(0.0, [(0.5, 1.2), (0.5, 1.6)])
    expected_llm = (q0 + q1) / 2
    assert float(sample_llm_loss(z, SCORES, 2, 1)) == pytest.approx(expected_llm, rel=1e-6)
    # sample-sample: sim = h h^T / T; s01 = 0.64/0.5, s02 = 0.6/0.5, s12 = 0
    #  q0: positive q1, negative q2; q1: positive q0, negative q2; q2 alone in cluster 1: skipped
    expected_ss = (_nll(1.28, [(1, 1.2)]) + _nll(1.28, [(1, 0.0)])) / 2
    assert float(sample_sample_loss(H, CLUSTERS, T)) == pytest.approx(expected_ss, rel=1e-6)

    class Stub(torch.nn.Module):  # pool -> H, identity model keys, a fixed quality head
        def __init__(self):
            super().__init__()
            self.model_keys = torch.nn.Parameter(torch.eye(3))
            self.head = torch.nn.Linear(3, 3)

        def pool(self, ids, mask):
            return H

    net, batch = Stub(), (None, None, CLUSTERS, SCORES)
    plain = DualContrastiveObjective(top_k=2, last_k=1, temperature=T, sample_weight=0.5, masked=False)
    assert float(plain(net, batch).detach()) == pytest.approx(expected_llm + 0.5 * expected_ss, rel=1e-6)
    joint = DualContrastiveObjective(top_k=2, last_k=1, temperature=T, sample_weight=0.5, masked=True)
    masked = float(masked_quality_loss(net.head(H), SCORES).detach())
    assert float(joint(net, batch).detach()) == pytest.approx(expected_llm + 0.5 * expected_ss + masked, rel=1e-6)


def test_a_batch_without_contrast_gives_zero_loss_with_a_gradient():
    h = H.clone().requires_grad_(True)
    loss = sample_sample_loss(h, torch.tensor([1, 1, 1]), T)  # one cluster: no negatives
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert h.grad is not None
    assert float(sample_llm_loss(H / T, torch.ones(3, 3), 2, 1)) == 0.0  # all tied: nothing to contrast


@pytest.mark.parametrize("params, message", [
    ({"objective": "dc"}, "objective must be one of masked, routerdc, masked+routerdc"),
    ({"objective": "routerdc", "top_k": 10}, "top_k=10 exceeds the number of models (9)"),
    ({"objective": "routerdc", "last_k": 0}, "last_k must be a positive integer"),
    ({"objective": "masked+routerdc", "n_clusters": 1}, "n_clusters must be at least 2"),
    ({"objective": "routerdc", "n_clusters": 500}, "n_clusters=500 exceeds the number of training prompts (40)"),
    ({"objective": "routerdc", "temperature": 0.0}, "temperature must be a positive number"),
    ({"objective": "routerdc", "sample_weight": -1.0}, "sample_weight must be a number >= 0"),
])
def test_bad_hyperparameters_fail_in_one_line_naming_the_parameter(small_log, params, message):
    router = make_router("finetuned-encoder", base_model="tiny", val_fraction=0.0, **params)
    with pytest.raises(ConfigError) as info:
        router.fit(small_log.subset(np.arange(40)))
    text = str(info.value)
    assert message in text and "\n" not in text
    assert text.startswith("finetuned-encoder: ")


def test_masked_objective_ignores_contrastive_hyperparameters():
    """top_k larger than the model count is only an error when the RouterDC loss is used."""
    from routecast.router.dual_contrastive import check_dual_contrastive

    check_dual_contrastive(objective="masked", top_k=99, last_k=0, n_clusters=0, temperature=-1,
                           sample_weight=-1, n_models=9, n_prompts=10)


TINY = dict(base_model="tiny", max_seq_length=32, batch_size=16, lr=1e-3, head_lr=1e-2, n_clusters=4, seed=3)


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["routerdc", "masked+routerdc"])
def test_training_loss_decreases_on_the_tiny_model(small_log, objective):
    train = small_log.subset(np.arange(96))
    router = make_router("finetuned-encoder", objective=objective, max_epochs=5, val_fraction=0.0,
                         **TINY).fit(train)
    history = router.train_loss_history_
    assert len(history) == 5 and all(np.isfinite(history))
    assert history[-1] < 0.9 * history[0], history
    assert sum(router.cluster_sizes_) == 96 and len(router.cluster_sizes_) == 4


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["routerdc", "masked+routerdc"])
def test_checkpoint_round_trip_ships_model_embeddings_not_centroids(small_log, tmp_path, objective):
    from routecast.core.checkpoint import load_checkpoint, save_checkpoint

    train, test = small_log.subset(np.arange(80)), small_log.subset(np.arange(300, 330))
    router = make_router("finetuned-encoder", objective=objective, max_epochs=1, val_fraction=0.25,
                         **TINY).fit(train)
    texts = list(test.prompts)
    quality = router.predict_quality(texts)
    assert quality.shape == (30, 9) and 0 <= quality.min() and quality.max() <= 1
    assert quality.std(axis=0).max() > 0  # the prediction depends on the prompt
    meta, arrays = router.get_state()
    assert arrays["net.model_keys"].shape == (9, 32)
    if objective == "routerdc":  # the calibration of the similarity, no quality head
        assert {"net.key_scale", "net.key_bias"} <= set(arrays) and "net.head.weight" not in arrays
        assert not np.allclose(arrays["net.key_scale"], 1.0)  # fitted after training
    else:
        assert "net.head.weight" in arrays and "net.key_scale" not in arrays
    assert not any("centroid" in k or "cluster" in k for k in arrays)
    assert "cluster_sizes_" in meta and not any("centroid" in k for k in meta)
    loaded = load_checkpoint(save_checkpoint(router, tmp_path / "router"))
    np.testing.assert_array_equal(loaded.predict_quality(texts), quality)
    dist = router.routing_distribution(texts)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-6)  # float32 softmax
    np.testing.assert_array_equal(loaded.routing_distribution(texts), dist)
    again = make_router("finetuned-encoder", objective=objective, max_epochs=1, val_fraction=0.25,
                        **TINY).fit(train)
    np.testing.assert_array_equal(again.predict_quality(texts), quality)  # seeded end to end


@pytest.mark.slow
def test_routing_distribution_needs_model_embeddings(small_log):
    from routecast.errors import RoutingError

    router = make_router("finetuned-encoder", max_epochs=1, val_fraction=0.0, **TINY).fit(small_log.subset(np.arange(32)))
    with pytest.raises(RoutingError, match="objective 'routerdc' or 'masked\\+routerdc'"):
        router.routing_distribution(["hello"])
