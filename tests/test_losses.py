"""Tests of imbench.methods.losses.

Every loss is checked, for every task kind it supports, against an
independent formulation written here: explicit per-sample / per-element loops
over a naive softmax or sigmoid in float64 (autograd of the loops gives the
reference gradient), or a library reference (``F.cross_entropy``,
``torchvision.ops.sigmoid_focal_loss``, sklearn's ``compute_class_weight``).
Small hand-computed cases pin the reductions.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from torchvision.ops import sigmoid_focal_loss

from imbench.methods import losses as L
from imbench.methods.losses import (
    KINDS,
    LMF_PAPER_ALPHA_BETA,
    LOSS_DEFAULTS,
    LOSS_KINDS,
    make_loss,
)

ALL_IDS = (
    "ce",
    "cost_sensitive",
    "bwcce",
    "focal",
    "ldam",
    "ldam_drw",
    "lmf",
    "cw_focal",
    "logit_adjustment",
    "cb_focal",
    "focal_lmf",
    "ldam_lmf",
    "balanced_softmax",
    "cb_ce",
    "vs_loss",
    "lade",
)
COMBOS = [(lid, kind) for lid in ALL_IDS for kind in LOSS_KINDS[lid]]

# Training statistics used by the generic tests.
COUNTS = {"multiclass": [50, 20, 7, 3], "binary": [40, 9], "multilabel": [12, 3, 30]}
N_ML = 40  # multilabel n_samples
LN2, LN3, LN43 = math.log(2.0), math.log(3.0), math.log(4.0 / 3.0)


def build(loss_id, kind, counts=None, **params):
    counts = COUNTS[kind] if counts is None else counts
    n = N_ML if kind == "multilabel" else None
    return make_loss(loss_id, counts, kind, n_samples=n, **params)


def batch(kind, k=None, b=8, scale=2.0, seed=0, dtype=torch.float64):
    """Random logits (requires_grad) and targets covering every class / both label values."""
    k = len(COUNTS[kind]) if k is None else k
    g = torch.Generator().manual_seed(seed)
    z = (scale * torch.randn(b, k, generator=g, dtype=torch.float64)).to(dtype).requires_grad_(True)
    if kind == "multilabel":
        t = (torch.rand(b, k, generator=g) < 0.4).double()
        t[0] = 1.0
        t[1] = 0.0
        return z, t
    y = (torch.arange(b) % k)[torch.randperm(b, generator=g)]
    return z, y


# --------------------------------------------------------------------------
# Independent reference formulations (float64, explicit loops, naive softmax)
# --------------------------------------------------------------------------

SPEC_DEFAULTS = {  # the SPEC/brief defaults, written out independently of LOSS_DEFAULTS
    "ce": {},
    "cost_sensitive": {},
    "bwcce": {},
    "focal": {"gamma": 2.0, "alpha": None},
    "ldam": {"max_m": 0.5, "s": 30.0},
    "ldam_drw": {"max_m": 0.5, "s": 30.0, "beta": 0.9999, "drw_start": 0.8},
    "lmf": {"alpha": 1.0, "beta": 1.0, "gamma": 1.5, "max_m": 0.5, "s": 30.0},
    "cw_focal": {"gamma": 2.0},
    "logit_adjustment": {"tau": 1.0},
    "cb_focal": {"beta": 0.9999, "gamma": 1.0},
    # the LMF official code's Focal and LDAM baselines (config.ini gamma 1.5, get_mlist max_m 0.5, s 30)
    "focal_lmf": {"gamma": 1.5, "max_m": 0.5},
    "ldam_lmf": {"max_m": 0.5, "s": 30.0},
    "balanced_softmax": {},  # Ren et al.: no parameter
    "cb_ce": {"beta": 0.9999},  # Cui et al.'s β for the long-tailed CIFAR softmax runs
    "vs_loss": {"gamma": 0.3, "tau": 1.0},  # orparask/VS-Loss losses.py: VSLoss(gamma=0.3, tau=1.0)
    # hyperconnect/LADE config/*/lade.yaml: RouteWeightLoss weight 0.1, remine_lambda 0.1
    "lade": {"alpha": 0.1, "remine_lambda": 0.1},
}


def sk_balanced(counts):
    labels = np.repeat(np.arange(len(counts)), counts)
    return compute_class_weight("balanced", classes=np.arange(len(counts)), y=labels)


def ref_bwcce_w(counts):
    n_total, k = sum(counts), len(counts)
    return [(1.0 - c / n_total) / (k - 1) for c in counts]


def ref_cb_w(counts, beta):
    raw = [(1.0 - beta) / (1.0 - beta**c) for c in counts]
    return [w * len(counts) / sum(raw) for w in raw]


def ref_margins(counts, max_m):
    # kaidic formulation: 1/sqrt(sqrt(n)), rescaled so that the largest margin is max_m
    m = [1.0 / math.sqrt(math.sqrt(c)) for c in counts]
    return [v * max_m / max(m) for v in m]


def naive_logp(row):
    e = torch.exp(row)
    return torch.log(e / e.sum())


def sigmoid(x):
    return 1.0 / (1.0 + torch.exp(-x))


def r_ce(z, y, w=None):
    num, den = 0.0, 0.0
    for i in range(z.shape[0]):
        c = int(y[i])
        wi = 1.0 if w is None else w[c]
        num = num + wi * (-naive_logp(z[i])[c])
        den += wi
    return num / den


def r_focal(z, y, gamma, alpha=None):
    tot = 0.0
    for i in range(z.shape[0]):
        c = int(y[i])
        logpt = naive_logp(z[i])[c]
        a = 1.0 if alpha is None else alpha[c]
        tot = tot + (-a * (1.0 - torch.exp(logpt)) ** gamma * logpt)
    return tot / z.shape[0]


def r_ldam(z, y, m, s, w=None):
    rows = []
    for i in range(z.shape[0]):
        c = int(y[i])
        rows.append(
            torch.stack([s * (z[i, j] - (m[j] if j == c else 0.0)) for j in range(z.shape[1])])
        )
    return r_ce(torch.stack(rows), y, w)


def r_balanced_softmax(z, y, counts):
    # Ren et al. 2020, Eq. 4: the "balanced" softmax φ_c = n_c exp(z_c) / Σ_j n_j exp(z_j), NLL, ÷ B.
    tot = 0.0
    for i in range(z.shape[0]):
        c = int(y[i])
        num = [counts[j] * torch.exp(z[i, j]) for j in range(z.shape[1])]
        tot = tot - torch.log(num[c] / sum(num))
    return tot / z.shape[0]


def r_cb_ce(z, y, w):
    # Cui et al.'s official softmax: tf.losses.softmax_cross_entropy(weights=w_y), whose default
    # reduction SUM_BY_NONZERO_WEIGHTS divides by the number of non-zero weights, i.e. by B.
    tot = 0.0
    for i in range(z.shape[0]):
        c = int(y[i])
        tot = tot + w[c] * (-naive_logp(z[i])[c])
    return tot / z.shape[0]


def r_vs(z, y, counts, gamma, tau):
    # orparask/VS-Loss VSLoss, written as the official code does: the logits divided by
    # Delta_c = (1/n_c)^γ / min_j (1/n_j)^γ, plus iota_c = τ log(n_c / N); plain CE, ÷ B.
    inv = [(1.0 / c) ** gamma for c in counts]
    delta = [v / min(inv) for v in inv]
    iota = [tau * math.log(c / sum(counts)) for c in counts]
    tot = 0.0
    for i in range(z.shape[0]):
        row = torch.stack([z[i, j] / delta[j] + iota[j] for j in range(z.shape[1])])
        tot = tot - naive_logp(row)[int(y[i])]
    return tot / z.shape[0]


def r_lade(z, y, counts, alpha, lam):
    # hyperconnect/LADE: PriorCELoss (CE on z + log(prior + 1e-9)) + alpha * LADELoss, written one
    # class at a time: T1_c = mean of z_ic over the batch's samples of c (sum / (b_c + 1e-8)),
    # T2_c = log((1/B) sum_i exp(z_ic - log(prior_c + 1e-9) + log(1/K + 1e-9))),
    # LADELoss = -sum_c prior_c (T1_c - T2_c - lam T2_c^2).
    n_total, k, b = sum(counts), z.shape[1], z.shape[0]
    prior = [c / n_total for c in counts]
    shift = torch.tensor([math.log(q + 1e-9) for q in prior], dtype=z.dtype)
    prior_ce = r_ce(z + shift, y)
    reg = 0.0
    for c in range(k):
        members = [i for i in range(b) if int(y[i]) == c]
        t1 = sum((z[i, c] for i in members), torch.zeros((), dtype=z.dtype)) / (len(members) + 1e-8)
        terms = torch.stack(
            [z[i, c] - math.log(prior[c] + 1e-9) + math.log(1.0 / k + 1e-9) for i in range(b)]
        )
        t2 = torch.log(torch.exp(terms).sum() / b)
        reg = reg - prior[c] * (t1 - t2 - lam * t2**2)
    return prior_ce + alpha * reg


def r_sigmoid_elem(x, t, gamma):
    p = sigmoid(x)
    bce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
    pt = t * p + (1 - t) * (1 - p)
    return (1 - pt) ** gamma * bce


def r_cb_focal(z, y, w, gamma, multilabel):
    b, k = z.shape
    tot = 0.0
    for i in range(b):
        for j in range(k):
            t = float(y[i, j]) if multilabel else float(int(y[i]) == j)
            wij = w[j] if multilabel else w[int(y[i])]
            tot = tot + wij * r_sigmoid_elem(z[i, j], t, gamma)
    return tot / b


def r_ml_focal(z, t, gamma, a_pos, a_neg):
    b, k = z.shape
    tot = 0.0
    for i in range(b):
        for j in range(k):
            tij = float(t[i, j])
            a = a_pos[j] * tij + a_neg[j] * (1 - tij)
            tot = tot + a * r_sigmoid_elem(z[i, j], tij, gamma)
    return tot / (b * k)


def r_ml_bce(z, t, pos_weight=None):
    b, k = z.shape
    tot = 0.0
    for i in range(b):
        for j in range(k):
            p = sigmoid(z[i, j])
            pw = 1.0 if pos_weight is None else pos_weight[j]
            tot = tot - (pw * t[i, j] * torch.log(p) + (1 - t[i, j]) * torch.log(1 - p))
    return tot / (b * k)


def reference(loss_id, kind, z, y, counts, n_samples=None, drw_active=False, **params):
    p = {**SPEC_DEFAULTS[loss_id], **params}
    k = len(counts)
    if kind == "multilabel":
        n_neg = [n_samples - c for c in counts]
        if loss_id == "ce":
            return r_ml_bce(z, y)
        if loss_id == "cost_sensitive":
            return r_ml_bce(z, y, [nn / c for nn, c in zip(n_neg, counts)])
        if loss_id == "focal":
            a = 0.25 if p["alpha"] is None else p["alpha"]
            if a < 0:
                return r_ml_focal(z, y, p["gamma"], [1.0] * k, [1.0] * k)
            return r_ml_focal(z, y, p["gamma"], [a] * k, [1 - a] * k)
        if loss_id == "cw_focal":
            return r_ml_focal(
                z,
                y,
                p["gamma"],
                [n_samples / (2 * c) for c in counts],
                [n_samples / (2 * nn) for nn in n_neg],
            )
        if loss_id == "cb_focal":
            return r_cb_focal(z, y, ref_cb_w(counts, p["beta"]), p["gamma"], multilabel=True)
        raise AssertionError(loss_id)
    if loss_id == "ce":
        return r_ce(z, y)
    if loss_id == "cost_sensitive":
        return r_ce(z, y, list(sk_balanced(counts)))
    if loss_id == "bwcce":
        return r_ce(z, y, ref_bwcce_w(counts))
    if loss_id == "focal":
        return r_focal(z, y, p["gamma"], p["alpha"])
    if loss_id == "cw_focal":
        return r_focal(z, y, p["gamma"], list(sk_balanced(counts)))
    if loss_id == "ldam":
        return r_ldam(z, y, ref_margins(counts, p["max_m"]), p["s"])
    if loss_id == "ldam_drw":
        w = ref_cb_w(counts, p["beta"]) if drw_active else None
        return r_ldam(z, y, ref_margins(counts, p["max_m"]), p["s"], w)
    if loss_id == "lmf":
        m = ref_margins(counts, p["max_m"])
        return p["alpha"] * r_ldam(z, y, m, p["s"], m) + p["beta"] * r_focal(z, y, p["gamma"], m)
    if loss_id == "logit_adjustment":
        n_total = sum(counts)
        shift = torch.tensor([p["tau"] * math.log(c / n_total) for c in counts], dtype=z.dtype)
        return r_ce(z + shift, y)
    if loss_id == "cb_focal":
        return r_cb_focal(z, y, ref_cb_w(counts, p["beta"]), p["gamma"], multilabel=False)
    if loss_id == "focal_lmf":
        return r_focal(z, y, p["gamma"], ref_margins(counts, p["max_m"]))
    if loss_id == "ldam_lmf":
        m = ref_margins(counts, p["max_m"])
        return r_ldam(z, y, m, p["s"], m)
    if loss_id == "balanced_softmax":
        return r_balanced_softmax(z, y, counts)
    if loss_id == "cb_ce":
        return r_cb_ce(z, y, ref_cb_w(counts, p["beta"]))
    if loss_id == "vs_loss":
        return r_vs(z, y, counts, p["gamma"], p["tau"])
    if loss_id == "lade":
        return r_lade(z, y, counts, p["alpha"], p["remine_lambda"])
    raise AssertionError(loss_id)


def value_and_grad(fn, z):
    v = fn(z)
    (g,) = torch.autograd.grad(v, z)
    return v.detach(), g


def assert_matches_reference(loss, ref_fn, z):
    v, g = value_and_grad(loss, z)
    rv, rg = value_and_grad(ref_fn, z)
    # Buffers are float32 (default dtype), so allow float32-level relative error.
    torch.testing.assert_close(v, rv, rtol=2e-6, atol=1e-9)
    torch.testing.assert_close(g, rg, rtol=2e-6, atol=1e-8)


# Non-default parameter sets exercised on top of the defaults.
VARIANTS = {
    "focal": [{"gamma": 0.5}, {"gamma": 3.0}],
    "ldam": [{"max_m": 0.3, "s": 1.0}],
    "ldam_drw": [{"beta": 0.99, "s": 10.0}],
    "lmf": [{"alpha": 0.5, "beta": 2.0, "gamma": 2.0}, {"max_m": 0.3, "s": 5.0}],
    "cw_focal": [{"gamma": 1.0}],
    "logit_adjustment": [{"tau": 0.5}, {"tau": 2.0}],
    "cb_focal": [{"beta": 0.99, "gamma": 2.0}, {"beta": 0.0, "gamma": 0.5}],
    "focal_lmf": [{"gamma": 2.0, "max_m": 0.3}, {"gamma": 0.0}],
    "ldam_lmf": [{"max_m": 0.3, "s": 1.0}],
    "cb_ce": [{"beta": 0.99}, {"beta": 0.0}],
    "vs_loss": [{"gamma": 0.0, "tau": 1.0}, {"gamma": 0.5, "tau": 0.0}, {"gamma": 0.2, "tau": 1.5}],
    "lade": [
        {"alpha": 0.0},
        {"alpha": 1.0, "remine_lambda": 0.0},
        {"alpha": 0.5, "remine_lambda": 2.0},
    ],
}
REF_CASES = (
    [(lid, kind, {}) for lid, kind in COMBOS]
    + [(lid, kind, v) for lid, vs in VARIANTS.items() for v in vs for kind in LOSS_KINDS[lid]]
    + [
        ("focal", "multiclass", {"alpha": [0.1, 0.2, 0.3, 0.4], "gamma": 2.0}),
        ("focal", "binary", {"alpha": [0.25, 0.75]}),
        ("focal", "multilabel", {"alpha": 0.6, "gamma": 1.0}),
        ("focal", "multilabel", {"alpha": -1.0}),
    ]
)


def _case_id(case):
    lid, kind, params = case
    return f"{lid}-{kind}-" + ",".join(f"{k}={v}" for k, v in params.items())


# --------------------------------------------------------------------------
# Value and gradient against the independent formulations
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", REF_CASES, ids=_case_id)
def test_value_and_grad_match_reference(case):
    lid, kind, params = case
    loss = build(lid, kind, **params)
    z, y = batch(kind)
    n = N_ML if kind == "multilabel" else None
    assert_matches_reference(
        lambda x: loss(x, y), lambda x: reference(lid, kind, x, y, COUNTS[kind], n, **params), z
    )


@pytest.mark.parametrize("kind", ["multiclass", "binary"])
def test_ldam_drw_weighted_phase_matches_reference(kind):
    loss = build("ldam_drw", kind)
    loss.set_epoch(9, 10)
    z, y = batch(kind, seed=3)
    assert_matches_reference(
        lambda x: loss(x, y),
        lambda x: reference("ldam_drw", kind, x, y, COUNTS[kind], drw_active=True),
        z,
    )


@pytest.mark.parametrize("lid,kind", COMBOS)
def test_gradcheck_finite_differences(lid, kind):
    loss = build(lid, kind).to(torch.float64)
    if lid == "ldam_drw":
        loss.set_epoch(9, 10)
    z, y = batch(kind, b=5, scale=0.5, seed=7)
    assert torch.autograd.gradcheck(lambda x: loss(x, y), (z,), eps=1e-6, atol=1e-5)


# --------------------------------------------------------------------------
# Library references
# --------------------------------------------------------------------------


@pytest.mark.parametrize("counts", [[3, 1], [50, 20, 7, 3], [1, 1, 1], [1000, 1]])
def test_cost_sensitive_weights_are_sklearn_balanced(counts):
    loss = make_loss("cost_sensitive", counts, "binary" if len(counts) == 2 else "multiclass")
    expected = sk_balanced(counts)
    np.testing.assert_allclose(loss.weight.double().numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(L.balanced_class_weights(counts), expected, rtol=1e-12)
    z, y = batch("multiclass", k=len(counts), seed=1)
    torch.testing.assert_close(
        loss(z, y), F.cross_entropy(z, y, weight=torch.tensor(expected)), rtol=2e-6, atol=0
    )


@pytest.mark.parametrize(
    "alpha,gamma", [(None, 2.0), (0.25, 2.0), (0.9, 0.5), (-1.0, 1.0), (0.0, 0.0)]
)
def test_multilabel_focal_matches_torchvision(alpha, gamma):
    params = {"gamma": gamma} if alpha is None else {"gamma": gamma, "alpha": alpha}
    loss = build("focal", "multilabel", **params)
    z, t = batch("multilabel", b=16, seed=5)
    tv_alpha = 0.25 if alpha is None else alpha
    assert_matches_reference(
        lambda x: loss(x, t),
        lambda x: sigmoid_focal_loss(x, t, alpha=tv_alpha, gamma=gamma, reduction="mean"),
        z,
    )


def test_multilabel_cost_sensitive_matches_pos_weight_bce():
    loss = build("cost_sensitive", "multilabel")
    pos_weight = torch.tensor([(N_ML - c) / c for c in COUNTS["multilabel"]], dtype=torch.float64)
    torch.testing.assert_close(loss.pos_weight.double(), pos_weight, rtol=1e-6, atol=0)
    z, t = batch("multilabel", seed=2)
    assert_matches_reference(
        lambda x: loss(x, t),
        lambda x: F.binary_cross_entropy_with_logits(x, t, pos_weight=pos_weight),
        z,
    )


@pytest.mark.parametrize("kind", ["multiclass", "binary"])
def test_ce_is_torch_cross_entropy(kind):
    z, y = batch(kind, seed=11)
    torch.testing.assert_close(build("ce", kind)(z, y), F.cross_entropy(z, y))


def test_multilabel_ce_is_bce_mean_over_elements():
    z, t = batch("multilabel", seed=4)
    torch.testing.assert_close(
        build("ce", "multilabel")(z, t), F.binary_cross_entropy_with_logits(z, t)
    )
    # ÷ (B·K), not ÷ B
    summed = F.binary_cross_entropy_with_logits(z, t, reduction="sum")
    assert not torch.isclose(build("ce", "multilabel")(z, t), summed / z.shape[0])


# --------------------------------------------------------------------------
# Hand-computed cases (the numbers in the comments are worked out by hand)
# --------------------------------------------------------------------------

# Two samples, K = 2: z0 = [0, 0], y0 = 0 -> p_t = 1/2, CE = ln 2 = 0.693147
#                     z1 = [0, ln 3], y1 = 1 -> p_t = 3/4, CE = ln(4/3) = 0.287682
HAND_Z = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)]], dtype=torch.float64)
HAND_Y = torch.tensor([0, 1])


def test_hand_ce():
    # mean = (0.693147 + 0.287682) / 2 = 0.490415
    v = make_loss("ce", [3, 1], "binary")(HAND_Z, HAND_Y)
    assert float(v) == pytest.approx(0.4904146265, rel=1e-9)


def test_hand_cost_sensitive_uses_weighted_mean():
    # counts [3, 1]: N = 4, K = 2 -> w = [4/6, 4/2] = [2/3, 2]
    # weighted mean = (2/3·0.693147 + 2·0.287682) / (2/3 + 2) = 1.037462 / 2.666667 = 0.389048
    # a plain mean of the weighted terms would be 1.037462 / 2 = 0.518731
    v = float(make_loss("cost_sensitive", [3, 1], "binary")(HAND_Z, HAND_Y))
    assert v == pytest.approx(0.3890483495, rel=1e-6)
    assert v != pytest.approx(0.5187311326, rel=1e-3)


def test_hand_bwcce_uses_weighted_mean():
    # counts [6, 3, 1]: N = 10, K = 3 -> w = [(1-.6)/2, (1-.3)/2, (1-.1)/2] = [0.2, 0.35, 0.45]
    # z0 = [0, 0, 0], y0 = 0 -> CE = ln 3;  z1 = [0, 0, ln 2], y1 = 2 -> p_t = 2/4, CE = ln 2
    # weighted mean = (0.2 ln 3 + 0.45 ln 2) / 0.65 = 0.817906;  ÷ B would give 0.265819
    z = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, LN2]], dtype=torch.float64)
    loss = make_loss("bwcce", [6, 3, 1])
    np.testing.assert_allclose(loss.weight.double().numpy(), [0.2, 0.35, 0.45], rtol=1e-6)
    v = float(loss(z, torch.tensor([0, 2])))
    assert v == pytest.approx(0.8179056754, rel=1e-6)
    assert v != pytest.approx(0.2658193445, rel=1e-3)


def test_hand_focal():
    # γ = 2: (1 - 1/2)^2 ln 2 = 0.173287;  (1 - 3/4)^2 ln(4/3) = 0.017980;  mean = 0.095633
    v = make_loss("focal", [3, 1], "binary")(HAND_Z, HAND_Y)
    assert float(v) == pytest.approx(0.0956334623, rel=1e-9)


def test_hand_cw_focal_divides_by_batch_not_alpha_sum():
    # α = balanced weights [2/3, 2]: (2/3·0.173287 + 2·0.017980) / 2 = 0.075742
    # ÷ Σα_t = 0.151485 / 2.666667 = 0.056807 would be the (rejected) weighted mean
    v = float(make_loss("cw_focal", [3, 1], "binary")(HAND_Z, HAND_Y))
    assert v == pytest.approx(0.0757423946, rel=1e-6)
    assert v != pytest.approx(0.0568067959, rel=1e-3)


def test_hand_ldam_margin_on_target_only():
    # counts [16, 1], max_m = 0.5 -> m = [0.5·(1/16)^(1/4), 0.5] = [0.25, 0.5]; s = 1
    # z = [0, 0], y = 0 -> s·(z - m_0 e_0) = [-0.25, 0] -> CE = ln(1 + e^0.25) = 0.825939
    # z = [0, 0], y = 1 -> [0, -0.5] -> CE = ln(1 + e^0.5) = 0.974077;  mean = 0.900008
    loss = make_loss("ldam", [16, 1], "binary", s=1.0)
    np.testing.assert_allclose(loss.margins.double().numpy(), [0.25, 0.5], rtol=1e-6)
    z = torch.zeros(2, 2, dtype=torch.float64)
    assert float(loss(z[:1], torch.tensor([0]))) == pytest.approx(0.8259394199, rel=1e-6)
    assert float(loss(z[:1], torch.tensor([1]))) == pytest.approx(0.9740769842, rel=1e-6)
    assert float(loss(z, torch.tensor([0, 1]))) == pytest.approx(0.9000082020, rel=1e-6)


def test_hand_ldam_default_scale():
    # s = 30 multiplies every logit after the margin: z = [0, 0], y = 1, m_1 = 0.5
    # -> CE([0, -15], 1) = ln(1 + e^15) = 15.000000306
    v = make_loss("ldam", [16, 1], "binary")(
        torch.zeros(1, 2, dtype=torch.float64), torch.tensor([1])
    )
    assert float(v) == pytest.approx(15.0 + math.log1p(math.exp(-15.0)), rel=1e-6)


def test_hand_logit_adjustment():
    # counts [3, 1] -> π = [3/4, 1/4]; z = [0, 0] -> z + log π = [ln .75, ln .25]
    # y = 1 -> CE = -ln(1/4) = ln 4 = 1.386294;  y = 0 -> -ln(3/4) = 0.287682
    loss = make_loss("logit_adjustment", [3, 1], "binary")
    z = torch.zeros(1, 2, dtype=torch.float64)
    assert float(loss(z, torch.tensor([1]))) == pytest.approx(math.log(4.0), rel=1e-6)
    assert float(loss(z, torch.tensor([0]))) == pytest.approx(LN43, rel=1e-6)


def test_hand_cb_focal_sums_elements_and_divides_by_batch():
    # β = 0.5, counts [1, 2]: raw w = [0.5/(1-0.5), 0.5/(1-0.25)] = [1, 2/3]; Σ = 5/3
    # normalised to Σ w = K = 2: w = [1.2, 0.8]
    # z = [0, 0], y = 0: each of the 2 elements has p = 1/2, BCE = ln 2, (1-p_t)^1 = 1/2
    # -> per sample Σ_j = ln 2, times w_0 = 1.2; two such samples, ÷ B = 2 -> 1.2 ln 2 = 0.831777
    # (÷ Σ w_y would give ln 2 = 0.693147, ÷ B·K would give 0.415888)
    loss = make_loss("cb_focal", [1, 2], "binary", beta=0.5)
    np.testing.assert_allclose(loss.weight.double().numpy(), [1.2, 0.8], rtol=1e-6)
    v = float(loss(torch.zeros(2, 2, dtype=torch.float64), torch.tensor([0, 0])))
    assert v == pytest.approx(1.2 * LN2, rel=1e-6)


def test_hand_balanced_softmax():
    # counts [3, 1], z = [0, 0]: φ = [3, 1]/4 -> y = 1: CE = ln 4; y = 0: CE = ln(4/3)
    loss = make_loss("balanced_softmax", [3, 1], "binary")
    z = torch.zeros(1, 2, dtype=torch.float64)
    assert float(loss(z, torch.tensor([1]))) == pytest.approx(math.log(4.0), rel=1e-6)
    assert float(loss(z, torch.tensor([0]))) == pytest.approx(LN43, rel=1e-6)
    assert loss.params == {} and loss.class_weights == "none"


@pytest.mark.parametrize("kind", ["multiclass", "binary"])
def test_balanced_softmax_is_logit_adjustment_at_tau_1(kind):
    # log n_c and log π_c differ by log N, which the softmax cancels: same value and gradient.
    z, y = batch(kind, seed=31)
    la, bs = build("logit_adjustment", kind, tau=1.0), build("balanced_softmax", kind)
    assert_matches_reference(lambda x: bs(x, y), lambda x: la(x, y), z)


def test_balanced_softmax_sigmoid_form_for_binary():
    # 2-class Balanced Softmax = BCE on z_1 - z_0 + log(n_pos / n_neg).
    z, y = batch("binary", seed=32)
    loss = build("balanced_softmax", "binary")
    n_neg, n_pos = COUNTS["binary"]
    ref = F.binary_cross_entropy_with_logits(
        z[:, 1] - z[:, 0] + math.log(n_pos / n_neg), y.double()
    )
    torch.testing.assert_close(loss(z, y), ref)


def test_hand_cb_ce_divides_by_batch_not_weight_sum():
    # β = 0.5, counts [1, 2]: w = [1.2, 0.8] (as in the cb_focal hand case). z = [0, 0] -> CE = ln 2.
    # batch y = [0, 1]: (1.2 + 0.8) ln 2 / 2 = ln 2; y = [0, 0]: 1.2 ln 2 (÷ Σ w would give ln 2)
    loss = make_loss("cb_ce", [1, 2], "binary", beta=0.5)
    np.testing.assert_allclose(loss.weight.double().numpy(), [1.2, 0.8], rtol=1e-6)
    z = torch.zeros(2, 2, dtype=torch.float64)
    assert float(loss(z, torch.tensor([0, 1]))) == pytest.approx(LN2, rel=1e-6)
    assert float(loss(z, torch.tensor([0, 0]))) == pytest.approx(1.2 * LN2, rel=1e-6)
    assert loss.class_weights == "cb"


def test_cb_ce_is_not_the_weighted_mean():
    # A batch whose classes are not equally represented (with each class equally often, Σ w_{y_i} = B
    # because the weights sum to K, and the two reductions agree).
    z, _ = batch("multiclass", seed=33)
    y = torch.tensor([0, 0, 0, 0, 0, 1, 2, 3])
    loss = build("cb_ce", "multiclass")
    w = torch.tensor(ref_cb_w(COUNTS["multiclass"], 0.9999), dtype=torch.float64)
    assert not torch.isclose(loss(z, y), F.cross_entropy(z, y, weight=w))
    torch.testing.assert_close(
        loss(z, y), (w[y] * F.cross_entropy(z, y, reduction="none")).mean(), rtol=2e-6, atol=1e-9
    )


def test_cb_ce_beta_0_is_ce():
    z, y = batch("multiclass", seed=34)
    torch.testing.assert_close(build("cb_ce", "multiclass", beta=0.0)(z, y), F.cross_entropy(z, y))


def test_hand_lmf():
    # counts [16, 1], s = 1, max_m = 0.5 -> m = [0.25, 0.5] (also the LDAM weights and the focal α)
    # z = 0, y = [0, 1]; LDAM terms 0.825939 and 0.974077 (see test_hand_ldam_margin_on_target_only)
    # LDAM (÷ Σ m_y) = (0.25·0.825939 + 0.5·0.974077) / 0.75 = 0.924698
    # focal γ = 1.5: p_t = 1/2 -> (0.25 + 0.5)·0.5^1.5·ln 2 / 2 = 0.091899 (÷ B, α inside)
    # LMF(1, 1) = 1.016597;  LMF(α=0.5, β=2) = 0.5·0.924698 + 2·0.091899 = 0.646147
    z = torch.zeros(2, 2, dtype=torch.float64)
    y = torch.tensor([0, 1])
    assert float(make_loss("lmf", [16, 1], "binary", s=1.0)(z, y)) == pytest.approx(
        1.0165969970, rel=1e-6
    )
    v = float(make_loss("lmf", [16, 1], "binary", s=1.0, alpha=0.5, beta=2.0)(z, y))
    assert v == pytest.approx(0.6461472999, rel=1e-6)


def test_hand_multilabel_cw_focal_and_cb_focal():
    # One label, n_samples = 4, n_pos = 1 -> α+ = 4/(2·1) = 2, α- = 4/(2·3) = 2/3
    # z = 0 (p = 1/2), t = [1, 0]: each element (1/2)^γ ln 2 with γ = 2 -> 0.173287
    # cw_focal = (2·0.173287 + 2/3·0.173287) / 2 elements = 0.231049
    z = torch.zeros(2, 1, dtype=torch.float64)
    t = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    v = float(make_loss("cw_focal", [1], "multilabel", n_samples=4)(z, t))
    assert v == pytest.approx((2 + 2 / 3) * 0.25 * LN2 / 2, rel=1e-6)
    # cb_focal, one label: w = K = 1; γ = 1: (1/2)·ln 2 per element, Σ over 2 elements ÷ B = 2
    v = float(make_loss("cb_focal", [1], "multilabel", n_samples=4)(z, t))
    assert v == pytest.approx(0.5 * LN2, rel=1e-6)


# --------------------------------------------------------------------------
# Reductions and identities
# --------------------------------------------------------------------------


@pytest.mark.parametrize("lid", ["cost_sensitive", "bwcce"])
def test_weighted_mean_not_plain_mean(lid):
    # The class-weighted CE losses divide by Σ w_{y_i}; ÷ B must give a different number here.
    z, y = batch("multiclass", seed=8)
    loss = build(lid, "multiclass")
    w = loss.weight.double()
    per = F.cross_entropy(z, y, reduction="none") * w[y]
    torch.testing.assert_close(loss(z, y), per.sum() / w[y].sum(), rtol=2e-6, atol=0)
    assert not torch.isclose(loss(z, y), per.mean(), rtol=1e-3)


@pytest.mark.parametrize("kind", ["multiclass", "binary"])
def test_cw_focal_plain_mean_not_weighted_mean(kind):
    # cw_focal with γ = 0 is Σ w_y CE_i / B, unlike F.cross_entropy(weight=w) (÷ Σ w_y).
    z, y = batch(kind, seed=9)
    loss = build("cw_focal", kind, gamma=0.0)
    w = torch.tensor(sk_balanced(COUNTS[kind]))
    per = F.cross_entropy(z, y, reduction="none") * w[y]
    torch.testing.assert_close(loss(z, y), per.mean(), rtol=2e-6, atol=0)
    assert not torch.isclose(loss(z, y), F.cross_entropy(z, y, weight=w), rtol=1e-3)


@pytest.mark.parametrize("kind", ["multiclass", "binary"])
def test_focal_gamma0_equals_ce(kind):
    z, y = batch(kind, seed=10)
    assert_matches_reference(
        lambda x: build("focal", kind, gamma=0.0)(x, y), lambda x: F.cross_entropy(x, y), z
    )


def test_multilabel_focal_gamma0_no_alpha_equals_bce():
    z, t = batch("multilabel", seed=10)
    assert_matches_reference(
        lambda x: build("focal", "multilabel", gamma=0.0, alpha=-1)(x, t),
        lambda x: F.binary_cross_entropy_with_logits(x, t),
        z,
    )


def test_focal_pt_not_detached():
    # With p_t detached the gradient would miss the modulator's derivative: compare both.
    z, y = batch("multiclass", seed=12)
    (g,) = torch.autograd.grad(build("focal", "multiclass")(z, y), z)
    logpt = F.log_softmax(z, 1).gather(1, y[:, None]).squeeze(1)
    detached = (-((1 - logpt.exp().detach()) ** 2) * logpt).mean()
    (gd,) = torch.autograd.grad(detached, z)
    assert not torch.allclose(g, gd, atol=1e-4)


def test_focal_alpha_inside_nll_unweighted_pt():
    # α_t multiplies the whole term; p_t comes from the unweighted softmax (not exp(-α CE)).
    z, y = batch("multiclass", seed=13)
    alpha = [0.1, 0.2, 0.3, 0.4]
    with_alpha = build("focal", "multiclass", alpha=alpha)(z, y)
    ce = F.cross_entropy(z, y, reduction="none")
    a = torch.tensor(alpha, dtype=torch.float64)[y]
    torch.testing.assert_close(
        with_alpha, (a * (1 - torch.exp(-ce)) ** 2 * ce).mean(), rtol=2e-6, atol=0
    )
    kaidic_quirk = ((1 - torch.exp(-a * ce)) ** 2 * a * ce).mean()
    assert not torch.isclose(with_alpha, kaidic_quirk, rtol=1e-3)


@pytest.mark.parametrize("kind", ["multiclass", "binary"])
def test_ldam_margin_only_on_target_logit(kind):
    loss = build("ldam", kind)
    z, y = batch(kind, seed=14)
    m = torch.tensor(ref_margins(COUNTS[kind], 0.5), dtype=torch.float64)
    onehot = F.one_hot(y, z.shape[1]).double()
    expected = F.cross_entropy(30.0 * (z - onehot * m[y][:, None]), y)
    torch.testing.assert_close(loss(z, y), expected, rtol=2e-6, atol=0)
    # Subtracting every class's own margin from every logit is a different loss.
    assert not torch.isclose(loss(z, y), F.cross_entropy(30.0 * (z - m), y), rtol=1e-3)
    # Without ×s (on all logits) the value is different as well.
    assert not torch.isclose(loss(z, y), F.cross_entropy(z - onehot * m[y][:, None], y), rtol=1e-3)


def test_ldam_rarest_class_gets_max_margin():
    loss = build("ldam", "multiclass", max_m=0.4)
    m = loss.margins.double().numpy()
    assert m[np.argmin(COUNTS["multiclass"])] == pytest.approx(0.4, rel=1e-6)
    np.testing.assert_allclose(m, ref_margins(COUNTS["multiclass"], 0.4), rtol=1e-6)
    assert np.all(np.diff(m) > 0)  # counts decrease along the classes -> margins increase


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 2.0])
def test_logit_adjustment_is_ce_on_shifted_logits(tau):
    counts = COUNTS["multiclass"]
    z, y = batch("multiclass", seed=15)
    prior = torch.tensor(counts, dtype=torch.float64) / sum(counts)
    loss = build("logit_adjustment", "multiclass", tau=tau)
    assert_matches_reference(
        lambda x: loss(x, y), lambda x: F.cross_entropy(x + tau * prior.log(), y), z
    )
    if tau == 1.0:  # = Balanced Softmax: z + log n_c (the constant log N cancels)
        counts_t = torch.tensor(counts, dtype=torch.float64)
        torch.testing.assert_close(
            loss(z, y), F.cross_entropy(z + counts_t.log(), y), rtol=2e-6, atol=0
        )
    if tau == 0.0:
        torch.testing.assert_close(loss(z, y), F.cross_entropy(z, y), rtol=1e-12, atol=0)


def test_multilabel_cw_focal_equals_binary_cw_focal_per_label():
    # One label with logit z is a 2-class softmax on [0, z] with counts [n_neg, n_pos]:
    # the multilabel definition must coincide with the binary one.
    n_pos, n_total = 7, 30
    z, t = batch("multilabel", k=1, b=10, seed=16)
    ml = make_loss("cw_focal", [n_pos], "multilabel", n_samples=n_total)
    binary = make_loss("cw_focal", [n_total - n_pos, n_pos], "binary")
    two = torch.cat([torch.zeros_like(z), z], dim=1)
    torch.testing.assert_close(ml(z, t), binary(two, t[:, 0].long()), rtol=2e-6, atol=0)


def test_multilabel_cb_focal_uses_per_label_weight():
    counts = COUNTS["multilabel"]
    loss = build("cb_focal", "multilabel", beta=0.99)
    w = torch.tensor(ref_cb_w(counts, 0.99), dtype=torch.float64)
    torch.testing.assert_close(loss.weight.double(), w, rtol=1e-6, atol=0)
    z, t = batch("multilabel", seed=17)
    elem = sigmoid_focal_loss(z, t, alpha=-1, gamma=1.0, reduction="none")
    torch.testing.assert_close(loss(z, t), (elem * w).sum() / z.shape[0], rtol=2e-6, atol=0)


def test_cb_focal_matches_official_modulator_form():
    # Official TF code: modulator = exp(-γ·t·z - γ·log(1 + e^{-z})), Σ ÷ B, per-sample w_{y_i}
    counts = COUNTS["multiclass"]
    z, y = batch("multiclass", seed=18)
    t = F.one_hot(y, z.shape[1]).double()
    gamma = 2.0
    mod = torch.exp(-gamma * t * z - gamma * torch.log1p(torch.exp(-z)))
    bce = F.binary_cross_entropy_with_logits(z, t, reduction="none")
    w = torch.tensor(ref_cb_w(counts, 0.9999), dtype=torch.float64)[y][:, None]
    expected = (w * mod * bce).sum() / z.shape[0]
    torch.testing.assert_close(
        build("cb_focal", "multiclass", gamma=gamma)(z, y), expected, rtol=2e-6, atol=0
    )


@pytest.mark.parametrize(
    "counts,beta", [([50, 20, 7, 3], 0.9999), ([5, 1], 0.5), ([10, 10, 1], 0.999)]
)
def test_class_balanced_weights(counts, beta):
    w = L.class_balanced_weights(counts, beta)
    np.testing.assert_allclose(w, ref_cb_w(counts, beta), rtol=1e-12)
    assert w.sum() == pytest.approx(len(counts))
    np.testing.assert_allclose(L.class_balanced_weights(counts, 0.0), np.ones(len(counts)))


# --------------------------------------------------------------------------
# DRW schedule
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "num_epochs,drw_start,switch",
    [(200, 0.8, 160), (10, 0.8, 8), (100, 0.29, 29), (7, 0.5, 3), (5, 0.0, 0), (5, 1.0, 5)],
)
def test_drw_switches_at_floor_of_fraction(num_epochs, drw_start, switch):
    loss = build("ldam_drw", "multiclass", drw_start=drw_start)
    z, y = batch("multiclass", seed=19)
    counts = COUNTS["multiclass"]
    plain = reference("ldam", "multiclass", z, y, counts).detach()
    weighted = reference("ldam_drw", "multiclass", z, y, counts, drw_active=True).detach()
    assert not torch.isclose(plain, weighted, rtol=1e-3)
    assert L.drw_switch_epoch(num_epochs, drw_start) == switch
    epochs = sorted({0, switch - 1, switch, num_epochs - 1} & set(range(num_epochs)))
    for epoch in epochs:
        loss.set_epoch(epoch, num_epochs)
        expected = weighted if epoch >= switch else plain
        torch.testing.assert_close(loss(z, y).detach(), expected, rtol=2e-6, atol=0)
        assert loss.drw_active == (epoch >= switch)


def test_drw_matches_kaidic_epoch_rule():
    # kaidic/LDAM-DRW: idx = epoch // 160 with 0-based epochs over 200 epochs -> β = [0, 0.9999][idx]
    loss = build("ldam_drw", "multiclass")
    for epoch in range(200):
        loss.set_epoch(epoch, 200)
        assert loss.drw_active == (epoch // 160 == 1)


def test_drw_unweighted_before_first_set_epoch():
    z, y = batch("multiclass", seed=20)
    drw = build("ldam_drw", "multiclass")
    torch.testing.assert_close(drw(z, y), build("ldam", "multiclass")(z, y))


@pytest.mark.parametrize("epoch,num_epochs", [(-1, 10), (0, 0), (1.5, 10), (True, 10)])
def test_drw_set_epoch_rejects_bad_arguments(epoch, num_epochs):
    with pytest.raises(ValueError, match="set_epoch"):
        build("ldam_drw", "multiclass").set_epoch(epoch, num_epochs)


def test_only_ldam_drw_is_epoch_dependent():
    for lid, kind in COMBOS:
        assert hasattr(build(lid, kind), "set_epoch") == (lid == "ldam_drw")


# --------------------------------------------------------------------------
# LMF
# --------------------------------------------------------------------------


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (1.5, 1.0), (0.5, 2.0), (1.0, 0.0), (0.0, 1.0)])
def test_lmf_is_alpha_ldam_plus_beta_focal(alpha, beta):
    kind, counts = "multiclass", COUNTS["multiclass"]
    z, y = batch(kind, seed=21)
    m = ref_margins(counts, 0.5)
    loss = build("lmf", kind, alpha=alpha, beta=beta)
    assert_matches_reference(
        lambda x: loss(x, y),
        lambda x: alpha * r_ldam(x, y, m, 30.0, m) + beta * r_focal(x, y, 1.5, m),
        z,
    )


def test_lmf_alpha_weights_ldam_not_focal():
    z, y = batch("multiclass", seed=22)
    ldam_term, focal_term = build("lmf", "multiclass").terms(z, y)
    only_ldam = build("lmf", "multiclass", alpha=1.0, beta=0.0)(z, y)
    torch.testing.assert_close(only_ldam, ldam_term)
    assert not torch.isclose(only_ldam, focal_term, rtol=1e-3)
    # The LDAM term is weighted by the margins (÷ Σ m_y), not the unweighted LDAM.
    assert not torch.isclose(ldam_term, build("ldam", "multiclass")(z, y), rtol=1e-3)


def test_hand_lmf_baselines():
    # counts [16, 1], max_m = 0.5 -> m = [0.25, 0.5]; z = 0, y = [0, 1] (the case of test_hand_lmf)
    # focal_lmf, γ = 1.5: (0.25 + 0.5)·0.5^1.5·ln 2 / 2 = 0.091899 (α = m inside, ÷ B)
    # ldam_lmf, s = 1: (0.25·0.825939 + 0.5·0.974077) / 0.75 = 0.924698 (weights = m, ÷ Σ m_y)
    z = torch.zeros(2, 2, dtype=torch.float64)
    y = torch.tensor([0, 1])
    assert float(make_loss("focal_lmf", [16, 1], "binary")(z, y)) == pytest.approx(
        0.0918985, rel=1e-5
    )
    assert float(make_loss("ldam_lmf", [16, 1], "binary", s=1.0)(z, y)) == pytest.approx(
        0.9246983, rel=1e-5
    )


def test_lmf_baselines_are_the_terms_of_lmf():
    # The official code builds LMF from exactly these two losses: LMF(α, β) = α·ldam_lmf + β·focal_lmf.
    z, y = batch("multiclass", seed=23)
    ldam_term, focal_term = build("lmf", "multiclass").terms(z, y)
    torch.testing.assert_close(build("ldam_lmf", "multiclass")(z, y), ldam_term)
    torch.testing.assert_close(build("focal_lmf", "multiclass")(z, y), focal_term)
    # ... and they differ from our `focal` (γ 2, no α) and `ldam` (no weights).
    assert not torch.isclose(
        build("focal_lmf", "multiclass")(z, y), build("focal", "multiclass", gamma=1.5)(z, y)
    )
    assert not torch.isclose(
        build("ldam_lmf", "multiclass")(z, y), build("ldam", "multiclass")(z, y)
    )


def test_class_weights_are_recorded():
    assert build("focal_lmf", "multiclass").class_weights == "margins"
    assert build("ldam_lmf", "multiclass").class_weights == "margins"
    assert build("lmf", "multiclass").class_weights == "margins"
    assert build("ldam", "multiclass").class_weights == "none"
    assert build("focal", "multiclass").class_weights == "none"
    assert build("focal", "multiclass", alpha=[1, 2, 3, 4]).class_weights == "alpha"
    assert build("focal", "multilabel").class_weights == "alpha"  # torchvision's α = 0.25
    assert build("focal", "multilabel", alpha=-1.0).class_weights == "none"
    assert build("cost_sensitive", "multiclass").class_weights == "balanced"
    assert build("cost_sensitive", "multilabel").class_weights == "pos_weight"
    assert build("ldam_drw", "binary").class_weights == "cb_drw"


def test_lmf_paper_alpha_beta_table():
    tasks = ("odir_eye", "ham10000", "isic2019")
    models = ("efficientnet_v2_s", "resnet50", "densenet121")
    assert set(LMF_PAPER_ALPHA_BETA) == {(t, m) for t in tasks for m in models}
    assert LMF_PAPER_ALPHA_BETA[("odir_eye", "efficientnet_v2_s")] == (1.0, 0.6)
    assert LMF_PAPER_ALPHA_BETA[("odir_eye", "densenet121")] == (1.0, 1.1)
    assert LMF_PAPER_ALPHA_BETA[("ham10000", "resnet50")] == (0.5, 1.0)
    assert LMF_PAPER_ALPHA_BETA[("ham10000", "densenet121")] == (1.0, 1.3)
    assert LMF_PAPER_ALPHA_BETA[("isic2019", "densenet121")] == (1.0, 2.0)
    a, b = LMF_PAPER_ALPHA_BETA[("ham10000", "resnet50")]
    assert build("lmf", "multiclass", alpha=a, beta=b).params["alpha"] == 0.5


# --------------------------------------------------------------------------
# Numerical robustness
# --------------------------------------------------------------------------


def extreme_batch(kind, k, dtype):
    if kind == "multilabel":
        z = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype=dtype)
        t = torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=dtype)
        return z.requires_grad_(True), t
    rows = [
        [1e4, -1e4] + [0.0] * (k - 2),
        [-1e4, 1e4] + [0.0] * (k - 2),
        [1e4, -1e4] + [0.0] * (k - 2),
    ]
    # targets on the +1e4 logit, on the -1e4 logit (loss ~ 2e4) and again on the -1e4 logit
    return torch.tensor(rows, dtype=dtype).requires_grad_(True), torch.tensor([0, 0, 1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("lid,kind", COMBOS)
def test_extreme_logits_give_finite_loss_and_grads(lid, kind, dtype):
    params = {"gamma": 0.5} if lid in ("focal", "cw_focal", "lmf", "cb_focal") else {}
    for p in ({}, params):
        loss = build(lid, kind, **p).to(dtype)
        if lid == "ldam_drw":
            loss.set_epoch(9, 10)
        z, y = extreme_batch(kind, len(COUNTS[kind]), dtype)
        v = loss(z, y)
        (g,) = torch.autograd.grad(v, z)
        assert torch.isfinite(v), (lid, kind, p, v)
        assert torch.isfinite(g).all(), (lid, kind, p, g)
        assert float(v.detach()) > 1.0  # a confidently wrong sample is in the batch


def test_extreme_logits_value_is_exact():
    # CE on [-1e4, 1e4] with target 0 is 2e4 exactly (a log(softmax) would give inf).
    z = torch.tensor([[-1e4, 1e4]])
    assert float(make_loss("ce", [1, 1], "binary")(z, torch.tensor([0]))) == pytest.approx(2e4)
    assert float(make_loss("focal", [1, 1], "binary")(z, torch.tensor([0]))) == pytest.approx(2e4)


@pytest.mark.parametrize("lid", ["focal", "cw_focal", "cb_focal"])
def test_multilabel_focal_keeps_precision_for_confident_correct_logits(lid):
    # z = 40, t = 1: 1 - p_t = sigmoid(-40) = 4.2e-18, which 1 - sigmoid(40) rounds to 0 in float64.
    # γ = 1: loss element = sigmoid(-40)·softplus(-40) ≈ e^-80 (times the α/weight factor), not 0.
    z = torch.tensor([[40.0]], dtype=torch.float64)
    t = torch.ones(1, 1, dtype=torch.float64)
    params = {"gamma": 1.0, "alpha": -1} if lid == "focal" else {"gamma": 1.0}
    loss = make_loss(lid, [2], "multilabel", n_samples=4, **params).to(torch.float64)
    factor = {"focal": 1.0, "cw_focal": 4 / (2 * 2), "cb_focal": 1.0}[lid]
    exact = factor * math.exp(-40.0) / (1 + math.exp(-40.0)) * math.log1p(math.exp(-40.0))
    assert float(loss(z, t)) == pytest.approx(exact, rel=1e-9, abs=0.0)


@pytest.mark.parametrize(
    "lid",
    [
        "ce",
        "focal",
        "ldam",
        "lmf",
        "cb_focal",
        "logit_adjustment",
        "focal_lmf",
        "ldam_lmf",
        "balanced_softmax",
        "cb_ce",
    ],
)
def test_half_precision_logits_are_promoted(lid):
    z, y = batch("multiclass", seed=23, dtype=torch.float32)
    loss = build(lid, "multiclass")
    v16 = loss(z.detach().to(torch.bfloat16), y)
    assert v16.dtype == torch.float32
    v32 = loss(z.detach().to(torch.bfloat16).float(), y)
    torch.testing.assert_close(v16, v32)


# --------------------------------------------------------------------------
# Zero counts
# --------------------------------------------------------------------------

NEEDS_NONZERO = {
    "cost_sensitive",
    "cw_focal",
    "ldam",
    "ldam_drw",
    "lmf",
    "logit_adjustment",
    "cb_focal",
    "focal_lmf",
    "ldam_lmf",
    "balanced_softmax",
    "cb_ce",
    "vs_loss",
    "lade",
}


@pytest.mark.parametrize("lid,kind", [c for c in COMBOS if c[0] in NEEDS_NONZERO])
def test_zero_count_raises_naming_the_class(lid, kind):
    if kind == "multilabel":
        with pytest.raises(ValueError, match=r"label 1 .*0") as err:
            make_loss(lid, [5, 0, 3], kind, n_samples=10)
    else:
        counts = [5, 0] if kind == "binary" else [5, 3, 0, 2]
        idx = counts.index(0)
        with pytest.raises(ValueError, match=rf"class {idx} .*0") as err:
            make_loss(lid, counts, kind)
    assert lid in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("lid", ["cost_sensitive", "cw_focal"])
def test_multilabel_label_positive_everywhere_raises(lid):
    with pytest.raises(ValueError, match=r"label 2 has a negative count of 0"):
        make_loss(lid, [5, 3, 10], "multilabel", n_samples=10)


@pytest.mark.parametrize("lid,kind", [c for c in COMBOS if c[0] not in NEEDS_NONZERO])
def test_zero_count_allowed_where_not_needed(lid, kind):
    counts = [5, 0, 3] if kind == "multilabel" else ([5, 0] if kind == "binary" else [5, 3, 0, 2])
    loss = make_loss(lid, counts, kind, n_samples=10 if kind == "multilabel" else None)
    z, y = batch(kind, k=len(counts), seed=24)
    v = loss(z, y)
    assert torch.isfinite(v)
    assert torch.isfinite(torch.autograd.grad(v, z)[0]).all()


# --------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------


def test_unknown_loss_id():
    with pytest.raises(ValueError, match=r"unknown loss id 'ldam2'.*allowed: ce, cost_sensitive"):
        make_loss("ldam2", [1, 2])


@pytest.mark.parametrize("lid", ALL_IDS)
def test_unknown_parameter(lid):
    allowed = ", ".join(SPEC_DEFAULTS[lid]) or "none"
    with pytest.raises(
        ValueError, match=rf"unknown parameter 'gama' for loss '{lid}'; allowed: {allowed}"
    ):
        make_loss(lid, [3, 2, 1], gama=2)


def test_unknown_kind():
    with pytest.raises(
        ValueError, match=r"unknown task kind 'multi-label'.*multiclass, binary, multilabel"
    ):
        make_loss("ce", [1, 2], "multi-label")


@pytest.mark.parametrize("lid", [lid for lid in ALL_IDS if "multilabel" not in LOSS_KINDS[lid]])
def test_kind_without_meaning(lid):
    with pytest.raises(
        ValueError, match=rf"loss '{lid}' has no meaning for multilabel.*multiclass, binary"
    ):
        make_loss(lid, [3, 2], "multilabel", n_samples=5)


@pytest.mark.parametrize(
    "counts,kind,n_samples,match",
    [
        ([3, -1], "multiclass", None, r"class_counts\[1\]"),
        ([0.25, 0.75], "multiclass", None, r"class_counts\[0\].*not a non-negative integer"),
        ([3, float("nan")], "multiclass", None, r"class_counts\[1\]"),
        ([[1, 2], [3, 4]], "multiclass", None, r"1-D"),
        ([], "multiclass", None, r"non-empty"),
        ("abc", "multiclass", None, r"sequence"),
        ([5], "multiclass", None, r"at least 2 classes"),
        ([1, 2, 3], "binary", None, r"binary.*2 entries"),
        ([0, 0], "multiclass", None, r"sum to 0"),
        ([3, 2], "multilabel", None, r"n_samples"),
        ([3, 2], "multilabel", 0, r"n_samples"),
        ([3, 12], "multilabel", 10, r"class_counts\[1\] = 12 .*exceeds n_samples = 10"),
    ],
)
def test_bad_counts(counts, kind, n_samples, match):
    with pytest.raises(ValueError, match=match):
        make_loss("ce", counts, kind, n_samples=n_samples)


@pytest.mark.parametrize(
    "lid,kind,params,match",
    [
        ("focal", "multiclass", {"gamma": -1.0}, r"'gamma'"),
        ("focal", "multiclass", {"gamma": True}, r"'gamma'"),
        ("focal", "multiclass", {"alpha": [1.0, 2.0]}, r"'alpha'.*a list of 3 numbers ≥ 0"),
        ("focal", "multiclass", {"alpha": 0.25}, r"'alpha'.*list of 3"),
        (
            "focal",
            "multiclass",
            {"alpha": [1.0, -1.0, 1.0]},
            r"'alpha'.*numbers ≥ 0.*got \[1\.0, -1\.0, 1\.0\]",
        ),
        ("focal", "multilabel", {"alpha": 1.5}, r"'alpha'.*\[0, 1\], -1"),
        ("ldam", "multiclass", {"s": 0.0}, r"'s'"),
        ("ldam", "multiclass", {"max_m": -0.5}, r"'max_m'"),
        ("ldam_drw", "multiclass", {"beta": 1.0}, r"'beta'"),
        ("ldam_drw", "multiclass", {"drw_start": 1.5}, r"'drw_start'"),
        ("cb_focal", "multiclass", {"beta": -0.1}, r"'beta'"),
        ("lmf", "multiclass", {"alpha": 0.0, "beta": 0.0}, r"both 0"),
        ("lmf", "multiclass", {"beta": "1.0"}, r"'beta'"),
        ("logit_adjustment", "multiclass", {"tau": float("inf")}, r"'tau'"),
    ],
)
def test_bad_parameter_values(lid, kind, params, match):
    with pytest.raises(ValueError, match=match) as err:
        make_loss(lid, [4, 2, 1], kind, n_samples=10 if kind == "multilabel" else None, **params)
    assert f"loss '{lid}'" in str(err.value)


@pytest.mark.parametrize("kind", ["multiclass", "multilabel"])
def test_forward_rejects_wrong_shapes(kind):
    loss = build("ce", kind)
    k = len(COUNTS[kind])
    with pytest.raises(ValueError, match=rf"logits of shape \(B, {k}\)"):
        loss(torch.zeros(4, k + 1), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="targets|indices|target matrix"):
        loss(torch.zeros(4, k), torch.zeros(3, dtype=torch.long))


def test_forward_rejects_float_class_targets():
    with pytest.raises(ValueError, match="integer class indices"):
        build("ce", "multiclass")(torch.zeros(2, 4), torch.zeros(2))


# --------------------------------------------------------------------------
# Metadata, params, devices and dtypes
# --------------------------------------------------------------------------


def test_tables_are_consistent():
    from imbench.methods.api import PLUGIN_LOSSES

    assert KINDS == ("multiclass", "binary", "multilabel")
    # the losses of losses.py; a method defined by one module of methods/builtin/ brings its own
    # loss through the registration API, and is tested in its own test file
    assert set(LOSS_DEFAULTS) - set(PLUGIN_LOSSES) == set(ALL_IDS)
    assert set(LOSS_DEFAULTS) == set(LOSS_KINDS)
    assert {lid: LOSS_DEFAULTS[lid] for lid in ALL_IDS} == SPEC_DEFAULTS
    for kinds in LOSS_KINDS.values():
        assert set(kinds) <= set(KINDS) and "multiclass" in kinds and "binary" in kinds
    assert {lid for lid in ALL_IDS if "multilabel" in LOSS_KINDS[lid]} == {
        "ce",
        "cost_sensitive",
        "focal",
        "cw_focal",
        "cb_focal",
    }


@pytest.mark.parametrize("lid,kind", COMBOS)
def test_params_recorded_and_json_serialisable(lid, kind):
    loss = build(lid, kind)
    assert set(loss.params) == set(LOSS_DEFAULTS[lid])
    assert json.loads(json.dumps(loss.params)) == loss.params
    assert loss.loss_id == lid and loss.kind == kind and loss.num_classes == len(COUNTS[kind])
    expected = dict(SPEC_DEFAULTS[lid])
    if lid == "focal" and kind == "multilabel":
        expected["alpha"] = 0.25  # resolved torchvision default
    assert loss.params == expected


def test_none_means_default():
    loss = build("ldam_drw", "multiclass", s=None, beta=None, drw_start=0.5)
    assert loss.params == {"max_m": 0.5, "s": 30.0, "beta": 0.9999, "drw_start": 0.5}
    assert build("focal", "multilabel", alpha=None).params["alpha"] == 0.25


def test_params_record_overrides_and_do_not_alias_defaults():
    loss = build("focal", "multiclass", gamma=3, alpha=np.array([1, 2, 3, 4]))
    assert loss.params == {"gamma": 3.0, "alpha": [1.0, 2.0, 3.0, 4.0]}
    json.dumps(loss.params)
    loss.params["gamma"] = 99.0
    assert LOSS_DEFAULTS["focal"]["gamma"] == 2.0
    assert build("lmf", "binary", alpha=1.5)(torch.zeros(1, 2), torch.tensor([0])).ndim == 0


EXPECTED_BUFFERS = {
    "cost_sensitive": {"weight"},
    "bwcce": {"weight"},
    "cw_focal": {"alpha"},
    "ldam": {"margins"},
    "ldam_drw": {"margins", "cb_weight"},
    "lmf": {"margins"},
    "logit_adjustment": {"log_prior"},
    "cb_focal": {"weight"},
    "balanced_softmax": {"log_prior"},
    "cb_ce": {"weight"},
}


@pytest.mark.parametrize("lid", sorted(EXPECTED_BUFFERS))
def test_weights_are_buffers_and_follow_dtype(lid):
    loss = build(lid, "multiclass")
    assert EXPECTED_BUFFERS[lid] <= set(loss.state_dict())
    z, y = batch("multiclass", seed=25)
    if lid == "ldam_drw":
        loss.set_epoch(9, 10)
    v32 = loss(z.detach().float(), y)
    loss64 = loss.to(torch.float64)
    for name in EXPECTED_BUFFERS[lid]:
        assert getattr(loss64, name).dtype == torch.float64
    v64 = loss64(z.detach(), y)
    assert v64.dtype == torch.float64
    torch.testing.assert_close(v64.float(), v32, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lid,kind", COMBOS)
def test_device_agnostic_meta_device(lid, kind):
    # Moving to the meta device and running there fails if forward creates tensors on a fixed device.
    loss = build(lid, kind).to("meta")
    for buf in loss.buffers():
        assert buf.device.type == "meta"
    z, y = batch(kind, seed=26)
    out = loss(z.detach().to("meta"), y.to("meta"))
    assert out.device.type == "meta" and out.shape == ()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("lid,kind", COMBOS)
def test_cuda_matches_cpu(lid, kind):
    loss = build(lid, kind)
    z, y = batch(kind, seed=27, dtype=torch.float32)
    cpu = loss(z, y)
    gpu = loss.to("cuda")(z.detach().cuda(), y.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu.detach(), rtol=1e-5, atol=1e-6)


def test_hand_vs_loss():
    # counts [4, 1], γ = 0.5, τ = 1: Δ = [1, 1/2], ι = log([4/5, 1/5]). z = [0, 2]: the scaled and
    # shifted logits are [log 0.8, 1 + log 0.2], so y = 1 gives CE = -log(0.2 e / (0.8 + 0.2 e)).
    loss = make_loss("vs_loss", [4, 1], "binary", gamma=0.5, tau=1.0)
    z = torch.tensor([[0.0, 2.0]], dtype=torch.float64)
    want = -math.log(0.2 * math.e / (0.8 + 0.2 * math.e))
    assert float(loss(z, torch.tensor([1]))) == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(loss.scale.double().numpy(), [1.0, 0.5], rtol=1e-6)
    assert loss.params == {"gamma": 0.5, "tau": 1.0} and loss.class_weights == "none"


@pytest.mark.parametrize("kind", ["multiclass", "binary"])
def test_vs_loss_special_cases(kind):
    # γ = 0 is logit-adjusted CE with the same τ; τ = 0 and γ = 0 is plain CE (value and gradient).
    z, y = batch(kind, seed=41)
    vs, la = build("vs_loss", kind, gamma=0.0, tau=0.7), build("logit_adjustment", kind, tau=0.7)
    assert_matches_reference(lambda x: vs(x, y), lambda x: la(x, y), z)
    vs0, ce = build("vs_loss", kind, gamma=0.0, tau=0.0), build("ce", kind)
    assert_matches_reference(lambda x: vs0(x, y), lambda x: ce(x, y), z)


def test_vs_loss_needs_every_class_and_no_multilabel():
    with pytest.raises(ValueError, match=r"loss 'vs_loss'.*class 1"):
        make_loss("vs_loss", [5, 0, 3])
    with pytest.raises(ValueError, match=r"loss 'vs_loss' has no meaning for multilabel tasks"):
        make_loss("vs_loss", [5, 2, 3], "multilabel", n_samples=10)


def test_lade_class_absent_from_the_batch():
    # A class with no sample in the batch has T1_c = 0 (official: sum / (0 + 1e-8)) and still its
    # T2_c; the batch here has no sample of class 3.
    z = torch.tensor(
        [[1.0, -0.5, 0.2, 0.3], [0.1, 2.0, -1.0, 0.0], [0.5, 0.5, 1.5, -2.0]],
        dtype=torch.float64,
        requires_grad=True,
    )
    y = torch.tensor([0, 1, 2])
    loss = make_loss("lade", [50, 20, 7, 3], "multiclass")
    assert_matches_reference(
        lambda zz: loss(zz, y), lambda zz: r_lade(zz, y, [50, 20, 7, 3], 0.1, 0.1), z
    )


def test_lade_with_alpha_zero_is_balanced_softmax():
    z, y = batch("multiclass")
    lade = build("lade", "multiclass", alpha=0.0)
    bs = build("balanced_softmax", "multiclass")
    torch.testing.assert_close(lade(z, y), bs(z, y), rtol=1e-6, atol=1e-9)
