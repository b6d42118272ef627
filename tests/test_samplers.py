"""Tests for imbench.methods.samplers (SPEC §4: ros, rus, batch_balanced, plus plain shuffle)."""

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from imbench.methods.samplers import SAMPLER_DEFAULTS, make_batch_sampler, sampling_classes

# Real HAM10000 training-set class counts (dx column of HAM10000_metadata.csv).
HAM_COUNTS = {
    "nv": 6705,
    "mel": 1113,
    "bkl": 1099,
    "bcc": 514,
    "akiec": 327,
    "vasc": 142,
    "df": 115,
}


def labels_from_counts(counts, seed=0):
    """Labels with the given per-class counts, in a shuffled (not class-sorted) order."""
    labels = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(labels)


HAM_LABELS = labels_from_counts(list(HAM_COUNTS.values()))
SMALL_LABELS = labels_from_counts([40, 12, 5, 3], seed=1)  # N = 60, K = 4


def all_batches(sampler, epoch=0):
    sampler.set_epoch(epoch)
    return [list(b) for b in sampler]


def flat(batches):
    return np.concatenate([np.asarray(b, dtype=np.int64) for b in batches])


def test_defaults_registry():
    assert set(SAMPLER_DEFAULTS) == {"shuffle", "ros", "rus", "batch_balanced", "drs"}
    assert SAMPLER_DEFAULTS["drs"] == {"drs_start": 0.8, "beta": 0.9999}
    assert SAMPLER_DEFAULTS["ros"] == {"redraw": False}
    assert SAMPLER_DEFAULTS["rus"] == {"redraw": False}


# --- sampling classes ---------------------------------------------------------------------------


def test_sampling_classes_single_label_is_identity():
    labels = np.array([2, 0, 1, 2])
    np.testing.assert_array_equal(sampling_classes(labels), labels)


def test_sampling_classes_multilabel_rarest_positive_and_none():
    # Positive counts per label: [4, 2, 1, 2]
    y = np.array(
        [
            [1, 0, 0, 0],  # only label 0 -> 0
            [1, 1, 0, 0],  # 0 (4) vs 1 (2) -> 1
            [1, 1, 1, 0],  # label 2 is rarest (1) -> 2
            [1, 0, 0, 1],  # 0 (4) vs 3 (2) -> 3
            [0, 0, 0, 0],  # no positive -> "none" = K = 4
            [0, 0, 0, 0],
        ]
    )
    np.testing.assert_array_equal(sampling_classes(y), [0, 1, 2, 3, 4, 4])


def test_sampling_classes_multilabel_tie_goes_to_lower_index():
    # Labels 1 and 3 both have 2 positives; the sample holding both gets label 1.
    y = np.array(
        [[0, 1, 0, 1], [0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 1, 0], [1, 0, 1, 0], [1, 0, 1, 0]]
    )
    np.testing.assert_array_equal(sampling_classes(y), [1, 1, 3, 0, 0, 0])


def test_multilabel_sampler_balances_sampling_classes():
    y = np.zeros((30, 3), dtype=int)
    y[:20, 0] = 1  # 20 samples of label 0 only
    y[20:24, [0, 1]] = 1  # 4 with labels 0 and 1 -> class 1
    y[24:26, 2] = 1  # 2 of label 2
    # 26..29 all-negative -> class 3 ("none")
    sampler = make_batch_sampler("batch_balanced", y, batch_size=8, seed=0)
    for batch in all_batches(sampler):
        assert Counter(sampling_classes(y)[batch].tolist()) == {0: 2, 1: 2, 2: 2, 3: 2}
    ros = make_batch_sampler("ros", y, batch_size=8, seed=0)
    assert ros.num_samples == 4 * 20
    assert Counter(sampling_classes(y)[flat(all_batches(ros))].tolist()) == {
        0: 20,
        1: 20,
        2: 20,
        3: 20,
    }


# --- shuffle ------------------------------------------------------------------------------------


def test_shuffle_covers_each_index_once_and_keeps_last_batch():
    sampler = make_batch_sampler("shuffle", SMALL_LABELS, batch_size=7, seed=3)
    batches = all_batches(sampler)
    assert len(sampler) == len(batches) == math.ceil(60 / 7)
    assert [len(b) for b in batches] == [7] * 8 + [4]
    assert sorted(flat(batches).tolist()) == list(range(60))
    assert sampler.num_samples == 60
    other = all_batches(sampler, epoch=1)
    assert sorted(flat(other).tolist()) == list(range(60))
    assert flat(other).tolist() != flat(batches).tolist()


# --- ros / rus on HAM10000 ----------------------------------------------------------------------


def test_ros_ham10000_counts_and_originals_kept():
    sampler = make_batch_sampler("ros", HAM_LABELS, batch_size=64, seed=0)
    assert sampler.num_samples == 7 * 6705
    idx = flat(all_batches(sampler))
    assert idx.size == 7 * 6705
    assert len(sampler) == math.ceil(7 * 6705 / 64)
    assert Counter(HAM_LABELS[idx].tolist()) == {c: 6705 for c in range(7)}
    # Every original sample appears at least once.
    assert set(idx.tolist()) == set(range(HAM_LABELS.size))
    # The majority class is not oversampled: each of its samples appears exactly once.
    nv = np.flatnonzero(HAM_LABELS == 0)
    assert np.all(np.bincount(idx, minlength=HAM_LABELS.size)[nv] == 1)


def test_rus_ham10000_counts_without_replacement():
    sampler = make_batch_sampler("rus", HAM_LABELS, batch_size=64, seed=0)
    assert sampler.num_samples == 7 * 115
    idx = flat(all_batches(sampler))
    assert idx.size == 7 * 115
    assert Counter(HAM_LABELS[idx].tolist()) == {c: 115 for c in range(7)}
    assert np.unique(idx).size == idx.size  # no sample drawn twice
    # The minority class is kept whole.
    assert set(np.flatnonzero(HAM_LABELS == 6).tolist()) <= set(idx.tolist())


@pytest.mark.parametrize("sampler_id", ["ros", "rus"])
def test_redraw_false_same_multiset_new_order(sampler_id):
    sampler = make_batch_sampler(sampler_id, SMALL_LABELS, batch_size=8, seed=5)
    e0, e1 = flat(all_batches(sampler, 0)), flat(all_batches(sampler, 1))
    assert sorted(e0.tolist()) == sorted(e1.tolist())
    assert e0.tolist() != e1.tolist()


@pytest.mark.parametrize("sampler_id", ["ros", "rus"])
def test_redraw_true_new_samples_each_epoch(sampler_id):
    sampler = make_batch_sampler(sampler_id, SMALL_LABELS, batch_size=8, seed=5, redraw=True)
    assert sampler.params == {"redraw": True}
    e0, e1 = flat(all_batches(sampler, 0)), flat(all_batches(sampler, 1))
    assert sorted(e0.tolist()) != sorted(e1.tolist())
    # Still balanced every epoch.
    target = 40 if sampler_id == "ros" else 3
    for e in (e0, e1):
        assert Counter(SMALL_LABELS[e].tolist()) == {c: target for c in range(4)}


def test_ros_uses_imbalanced_learn_semantics():
    """Same indices as RandomOverSampler(sampling_strategy='auto') with the derived state."""
    from imblearn.over_sampling import RandomOverSampler

    sampler = make_batch_sampler("ros", SMALL_LABELS, batch_size=8, seed=11)
    state = int(np.random.SeedSequence([11, 0, 1]).generate_state(1)[0])
    ref = RandomOverSampler(random_state=state)
    ref.fit_resample(np.arange(60).reshape(-1, 1), SMALL_LABELS)
    assert sorted(flat(all_batches(sampler)).tolist()) == sorted(ref.sample_indices_.tolist())


def test_absent_class_is_simply_absent():
    labels = np.array([0] * 10 + [2] * 4)  # class 1 has no training sample
    ros = make_batch_sampler("ros", labels, batch_size=4, seed=0)
    idx = flat(all_batches(ros))
    assert Counter(labels[idx].tolist()) == {0: 10, 2: 10}
    bb = make_batch_sampler("batch_balanced", labels, batch_size=2, seed=0)  # B = K present = 2
    for batch in all_batches(bb):
        assert Counter(labels[batch].tolist()) == {0: 1, 2: 1}


def test_single_class_ros_rus_are_identity():
    labels = np.zeros(9, dtype=int)
    for sid in ("ros", "rus"):
        sampler = make_batch_sampler(sid, labels, batch_size=4, seed=0)
        assert sorted(flat(all_batches(sampler)).tolist()) == list(range(9))


# --- batch_balanced -----------------------------------------------------------------------------


def test_batch_balanced_divisible_exact_counts():
    sampler = make_batch_sampler("batch_balanced", HAM_LABELS, batch_size=14, seed=0)
    batches = all_batches(sampler)
    assert len(sampler) == len(batches) == math.ceil(HAM_LABELS.size / 14)
    for batch in batches:
        assert len(batch) == 14
        assert Counter(HAM_LABELS[batch].tolist()) == {c: 2 for c in range(7)}


def test_batch_balanced_remainder_slots():
    sampler = make_batch_sampler(
        "batch_balanced", SMALL_LABELS, batch_size=11, seed=2
    )  # 11 = 4*2 + 3
    batches = all_batches(sampler)
    assert len(batches) == math.ceil(60 / 11) == 6
    assert sampler.num_samples == 6 * 11
    extra = Counter()
    for batch in batches:
        assert len(batch) == 11
        counts = Counter(SMALL_LABELS[batch].tolist())
        assert all(counts[c] >= 2 for c in range(4))
        assert sum(counts[c] - 2 for c in range(4)) == 3
        extra.update({c: counts[c] - 2 for c in range(4)})
    # Remainder classes are drawn uniformly, not by frequency: over 6 batches × 3 slots the
    # majority class cannot take them all, and (checked over many epochs) each class gets some.
    many = Counter()
    for epoch in range(40):
        for batch in all_batches(sampler, epoch):
            counts = Counter(SMALL_LABELS[batch].tolist())
            many.update({c: counts[c] - 2 for c in range(4)})
    total = sum(many.values())
    assert total == 40 * 6 * 3
    assert all(abs(many[c] / total - 0.25) < 0.06 for c in range(4))


def test_batch_balanced_batches_shuffled_and_draw_with_replacement():
    labels = np.array([0] * 50 + [1] * 2)
    sampler = make_batch_sampler("batch_balanced", labels, batch_size=8, seed=0)
    batches = all_batches(sampler)
    # Class 1 has only 2 samples but 4 slots per batch: drawn with replacement.
    assert all(Counter(labels[b].tolist()) == {0: 4, 1: 4} for b in batches)
    # Not grouped by class within the batch (at least one batch is interleaved).
    assert any(labels[b].tolist() != sorted(labels[b].tolist()) for b in batches)


def test_batch_balanced_new_draws_each_epoch():
    sampler = make_batch_sampler("batch_balanced", SMALL_LABELS, batch_size=8, seed=0)
    assert all_batches(sampler, 0) != all_batches(sampler, 1)


def test_batch_balanced_batch_smaller_than_classes():
    with pytest.raises(ValueError, match="batch_size"):
        make_batch_sampler("batch_balanced", SMALL_LABELS, batch_size=3, seed=0)


# --- reproducibility ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sampler_id,params",
    [
        ("shuffle", {}),
        ("ros", {}),
        ("rus", {}),
        ("ros", {"redraw": True}),
        ("batch_balanced", {}),
        ("drs", {"drs_start": 0.5}),  # 6 epochs: epoch 3 is re-sampled
    ],
)
def test_reproducible_by_seed_and_epoch(sampler_id, params):
    a = make_batch_sampler(sampler_id, SMALL_LABELS, batch_size=8, seed=7, num_epochs=6, **params)
    b = make_batch_sampler(sampler_id, SMALL_LABELS, batch_size=8, seed=7, num_epochs=6, **params)
    c = make_batch_sampler(sampler_id, SMALL_LABELS, batch_size=8, seed=8, num_epochs=6, **params)
    assert all_batches(a, 3) == all_batches(b, 3)
    # Resume: a fresh sampler jumping straight to epoch 3 matches one that went through 0..2.
    for e in range(3):
        all_batches(b, e)
    assert all_batches(b, 3) == all_batches(a, 3)
    assert all_batches(a, 3) != all_batches(c, 3)
    # Iterating again without set_epoch repeats the epoch; global RNG state is irrelevant.
    first = [list(x) for x in a]
    np.random.seed(123)
    torch.manual_seed(123)
    assert [list(x) for x in a] == first


def test_params_and_attributes_json_serialisable():
    sampler = make_batch_sampler("ros", SMALL_LABELS, batch_size=8, seed=0, redraw=None)
    assert sampler.params == {"redraw": False}  # None means default
    json.dumps(sampler.params)
    assert len(sampler) == math.ceil(sampler.num_samples / 8)


# --- DataLoader integration ---------------------------------------------------------------------


@pytest.mark.parametrize("sampler_id", ["shuffle", "ros", "rus", "batch_balanced", "drs"])
def test_dataloader_batch_sampler(sampler_id):
    x = torch.arange(60, dtype=torch.float32).unsqueeze(1)
    y = torch.as_tensor(SMALL_LABELS)
    sampler = make_batch_sampler(
        sampler_id, y.numpy(), batch_size=8, seed=0, num_epochs=2
    )  # drs: epoch 1 re-samples
    assert isinstance(sampler, torch.utils.data.Sampler)
    loader = DataLoader(TensorDataset(x, y), batch_sampler=sampler)
    expected = all_batches(sampler, 1)
    sampler.set_epoch(1)
    got = [(xb, yb) for xb, yb in loader]
    assert len(loader) == len(sampler) == len(got)
    for (xb, yb), idx in zip(got, expected):
        assert xb.squeeze(1).long().tolist() == idx
        assert yb.tolist() == SMALL_LABELS[idx].tolist()


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            {"sampler_id": "smote"},
            "unknown sampler 'smote'; allowed: shuffle, ros, rus, batch_balanced",
        ),
        ({"sampler_id": "ros", "replace": True}, "unknown parameter.*replace.*allowed: redraw"),
        ({"sampler_id": "shuffle", "redraw": True}, "unknown parameter.*allowed: none"),
        ({"sampler_id": "ros", "redraw": "yes"}, "redraw: expected true, false or null"),
        ({"sampler_id": "shuffle", "batch_size": 0}, "batch_size must be >= 1"),
        ({"sampler_id": "shuffle", "seed": -1}, "seed must be >= 0"),
        ({"sampler_id": "shuffle", "labels": []}, "labels is empty"),
        ({"sampler_id": "shuffle", "labels": [0.5, 1.0]}, "labels must be integers"),
        ({"sampler_id": "shuffle", "labels": [[0, 2], [1, 0]]}, "only 0 and 1"),
        ({"sampler_id": "shuffle", "labels": [-1, 0]}, "labels must be >= 0"),
        ({"sampler_id": "drs", "drs_start": 1.5}, r"drs_start: expected a number in \[0, 1\]"),
        ({"sampler_id": "drs", "beta": 1.0}, r"beta: expected a number in \[0, 1\)"),
        ({"sampler_id": "drs", "num_epochs": 0}, "num_epochs must be >= 1"),
    ],
)
def test_errors(kwargs, match):
    args = {"sampler_id": "shuffle", "labels": SMALL_LABELS, "batch_size": 4, "seed": 0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_batch_sampler(**args)


def test_set_epoch_rejects_negative():
    sampler = make_batch_sampler("shuffle", SMALL_LABELS, batch_size=4, seed=0)
    with pytest.raises(ValueError, match="epoch"):
        sampler.set_epoch(-1)


# --- drs: deferred re-sampling ------------------------------------------------------------------


def ref_cb_draw_share(counts, beta):
    """Expected share of each class among class-balanced draws: n_c w_c / sum_j n_j w_j with the
    per-sample weight w_c = (1 - beta)/(1 - beta^n_c) of kaidic/LDAM-DRW's ImbalancedDatasetSampler."""
    w = [(1.0 - beta) / (1.0 - beta**n) for n in counts]
    mass = [n * wc for n, wc in zip(counts, w)]
    return np.array(mass) / sum(mass)


def test_drs_switches_at_the_declared_epoch():
    counts = list(HAM_COUNTS.values())
    drs = make_batch_sampler(
        "drs", HAM_LABELS, batch_size=64, seed=3, num_epochs=10
    )  # drs_start 0.8
    shuffle = make_batch_sampler("shuffle", HAM_LABELS, batch_size=64, seed=3)
    assert (
        drs.switch_epoch == 8 and [drs.resampling(e) for e in range(10)] == [False] * 8 + [True] * 2
    )
    for e in range(
        8
    ):  # before the switch: the plain shuffled epochs of the same seed, batch for batch
        b = all_batches(drs, e)
        assert b == all_batches(shuffle, e)
        np.testing.assert_array_equal(np.bincount(HAM_LABELS[flat(b)], minlength=7), counts)
    share = ref_cb_draw_share(counts, 0.9999)
    n = len(HAM_LABELS)
    for e in (8, 9):  # after it: N draws with replacement, each class near its class-balanced share
        b = all_batches(drs, e)
        got = np.bincount(HAM_LABELS[flat(b)], minlength=7)
        assert got.sum() == n and len(b) == len(drs) == math.ceil(n / 64)
        sd = np.sqrt(n * share * (1 - share))
        assert np.all(np.abs(got - n * share) < 5 * sd), (got, n * share)
        assert (
            got.min() > 0.8 * n / 7
        )  # close to balanced: the rarest class (115 images) is drawn ~1,300 times
        assert (
            len(np.unique(flat(b)[HAM_LABELS[flat(b)] == 6])) <= 115
        )  # with replacement, from its own images


@pytest.mark.parametrize(
    "drs_start,epochs", [(0.8, 200), (0.29, 100), (0.5, 7), (0.0, 5), (1.0, 5)]
)
def test_drs_switch_is_ldam_drw_switch(drs_start, epochs):
    from imbench.methods.losses import make_loss

    drs = make_batch_sampler(
        "drs", SMALL_LABELS, batch_size=8, seed=0, num_epochs=epochs, drs_start=drs_start
    )
    drw = make_loss("ldam_drw", [40, 12, 5, 3], drw_start=drs_start)
    for e in range(epochs):
        drw.set_epoch(e, epochs)
        assert drs.resampling(e) == drw.drw_active, e
    assert drs.switch_epoch == {200: 160, 100: 29, 7: 3}.get(epochs, drs.switch_epoch)


def test_drs_step_budget_epochs_take_the_phase_of_their_epoch():
    # train.epoch_batches asks for sampler epochs e + j*E when an epoch has too few batches
    drs = make_batch_sampler("drs", SMALL_LABELS, batch_size=8, seed=0, num_epochs=5)  # switch 4
    assert [drs.resampling(e + 5) for e in range(5)] == [False] * 4 + [True]
    assert not drs.resampling(13) and drs.resampling(14)


def test_drs_needs_the_training_length():
    drs = make_batch_sampler("drs", SMALL_LABELS, batch_size=8, seed=0)
    assert drs.num_samples == len(SMALL_LABELS)  # planning reads the epoch size without it
    with pytest.raises(ValueError, match=r"sampler 'drs' needs num_epochs"):
        all_batches(drs, 0)


def test_drs_multilabel_resamples_by_sampling_class():
    rng = np.random.default_rng(0)
    y = (rng.random((3000, 3)) < [0.5, 0.1, 0.02]).astype(int)
    classes = sampling_classes(y)
    drs = make_batch_sampler("drs", y, batch_size=32, seed=1, num_epochs=4, drs_start=0.5)
    before = np.bincount(classes[flat(all_batches(drs, 1))], minlength=4)
    np.testing.assert_array_equal(before, np.bincount(classes, minlength=4))
    after = np.bincount(classes[flat(all_batches(drs, 2))], minlength=4)
    share = ref_cb_draw_share(np.bincount(classes, minlength=4).tolist(), 0.9999)
    sd = np.sqrt(3000 * share * (1 - share))
    assert np.all(np.abs(after - 3000 * share) < 5 * sd), (after, 3000 * share)
