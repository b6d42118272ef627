"""Uncertainty of the benchmark numbers (SPEC §8): bootstrap intervals over the
test set, paired bootstrap comparisons, Holm correction and seed summaries.

Bootstrap conventions
---------------------
* **Cluster bootstrap.** Test images of one lesion (HAM10000, ISIC) or one
  patient (ODIR) are not independent, so a replicate draws G *groups* with
  replacement out of the G groups of the test set and takes every row of each
  drawn group (a group drawn twice contributes its rows twice). Replicates
  therefore vary in size. ``groups=None`` resamples rows (each row its own group).
* **Randomness.** ``np.random.default_rng(seed)`` draws all replicates up front
  as one ``(n_boot, G)`` matrix of group indices, so :func:`bootstrap_ci` and
  :func:`paired_bootstrap` given the same data, groups and seed use the same
  resamples.
* **Undefined replicates.** A replicate on which ``metric_fn`` returns ``None``
  or a non-finite value (e.g. AUC of a resample without positives) is dropped;
  ``n_boot`` in the result is the number of replicates kept. (The interval is
  then conditional on the metric being defined; with reasonable test sets this
  drops nothing.)
* **Interval.** Percentile interval: the ``alpha/2`` and ``1 - alpha/2``
  quantiles of the kept replicate values (``numpy.quantile``, linear
  interpolation). ``low``/``high`` are ``None`` when no replicate is kept.
* **Paired p-value.** With d* the kept replicate differences and B their count,
  ``p = min(1, 2 · min((1 + #{d* <= 0}) / (B + 1), (1 + #{d* >= 0}) / (B + 1)))``:
  the two-sided percentile-bootstrap test of "no difference", with the +1
  correction so that p is never 0 (the smallest attainable p is 2 / (B + 1)).
  Identical methods give d* = 0 everywhere and p = 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

MetricFn = Callable[..., "float | None"]


def _as_float(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _check_arrays(name: str, arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    if isinstance(arrays, np.ndarray) or not isinstance(arrays, (tuple, list)) or len(arrays) == 0:
        raise ValueError(
            f"{name}: expected a non-empty tuple of arrays (e.g. (y_true, probs, y_pred))"
        )
    arrays = tuple(np.asarray(a) for a in arrays)
    n = arrays[0].shape[0] if arrays[0].ndim else 0
    for i, a in enumerate(arrays):
        if a.ndim == 0 or a.shape[0] != n:
            raise ValueError(f"{name}[{i}]: expected {n} rows like {name}[0], got shape {a.shape}")
    if n == 0:
        raise ValueError(f"{name}: expected at least one row, got 0")
    return arrays


class _Resampler:
    """Row indices of cluster-bootstrap replicates.

    Rows are sorted by group once; a replicate is the concatenation of the
    row blocks of the drawn groups, built without a Python loop over groups.
    """

    def __init__(self, n_rows: int, groups: np.ndarray | None):
        if groups is None:
            self.order = np.arange(n_rows)
            self.starts = np.arange(n_rows)
            self.sizes = np.ones(n_rows, dtype=np.int64)
        else:
            groups = np.asarray(groups)
            if groups.ndim != 1 or groups.shape[0] != n_rows:
                raise ValueError(
                    f"groups: expected a 1-D array of {n_rows} group ids (one per row), got shape {groups.shape}"
                )
            if groups.dtype.kind == "f" and np.isnan(groups).any():
                raise ValueError("groups: expected a group id for every row, found NaN")
            _, codes = np.unique(groups, return_inverse=True)
            codes = codes.ravel()
            self.order = np.argsort(codes, kind="stable")
            self.sizes = np.bincount(codes)
            self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.n_groups = self.sizes.size

    def draws(self, n_boot: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.integers(0, self.n_groups, size=(n_boot, self.n_groups))

    def rows(self, drawn: np.ndarray) -> np.ndarray:
        sizes = self.sizes[drawn]
        total = int(sizes.sum())
        block_start = np.repeat(self.starts[drawn], sizes)
        offset_in_block = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return self.order[block_start + offset_in_block]


def _check_common(n_boot: int, alpha: float) -> None:
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot: expected a positive integer, got {n_boot!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: expected a number in (0, 1), got {alpha!r}")


def _interval(values: np.ndarray, alpha: float) -> tuple[float | None, float | None]:
    if values.size == 0:
        return None, None
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_ci(
    metric_fn: MetricFn,
    arrays: tuple[np.ndarray, ...],
    groups: np.ndarray | None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """Percentile bootstrap interval of ``metric_fn(*arrays)``, resampling groups.

    Args:
        metric_fn: called as ``metric_fn(*resampled_arrays)``; returns a float,
            or None where the metric is undefined.
        arrays: arrays sharing their first axis (rows), e.g. ``(y_true, probs, y_pred)``.
        groups: one group id per row (lesion or patient), or None for rows.
        n_boot: replicates to draw.
        seed: seed of ``np.random.default_rng``.
        alpha: 1 - coverage (0.05 → 95 % interval).

    Returns:
        ``{"estimate", "low", "high", "n_boot", "n_boot_requested", "seed", "alpha"}``;
        ``estimate`` is the metric on the full data, ``n_boot`` counts the
        replicates on which the metric was defined.
    """
    _check_common(n_boot, alpha)
    arrays = _check_arrays("arrays", arrays)
    sampler = _Resampler(arrays[0].shape[0], groups)
    values = []
    for drawn in sampler.draws(n_boot, seed):
        idx = sampler.rows(drawn)
        v = _as_float(metric_fn(*(a[idx] for a in arrays)))
        if v is not None:
            values.append(v)
    values = np.asarray(values, dtype=float)
    low, high = _interval(values, alpha)
    return {
        "estimate": _as_float(metric_fn(*arrays)),
        "low": low,
        "high": high,
        "n_boot": int(values.size),
        "n_boot_requested": int(n_boot),
        "seed": seed,
        "alpha": alpha,
    }


def paired_bootstrap(
    metric_fn: MetricFn,
    arrays_a: tuple[np.ndarray, ...],
    arrays_b: tuple[np.ndarray, ...],
    groups: np.ndarray | None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """Paired bootstrap of ``metric_fn(*arrays_a) - metric_fn(*arrays_b)``.

    Both methods must have been evaluated on the same test set, rows in the same
    order: the first array of each tuple is taken as ``y_true`` and must be equal.
    Every replicate applies the same (group) resample to both methods.

    Returns:
        ``{"diff", "low", "high", "p_value", "n_boot", "n_boot_requested", "seed", "alpha"}``
        (p-value formula in the module docstring; ``diff``/``p_value`` are None
        when undefined).
    """
    _check_common(n_boot, alpha)
    arrays_a = _check_arrays("arrays_a", arrays_a)
    arrays_b = _check_arrays("arrays_b", arrays_b)
    n = arrays_a[0].shape[0]
    if arrays_b[0].shape[0] != n:
        raise ValueError(
            f"arrays_b: expected {n} rows like arrays_a (same test set), got {arrays_b[0].shape[0]}"
        )
    if arrays_a[0].shape != arrays_b[0].shape or not np.array_equal(arrays_a[0], arrays_b[0]):
        raise ValueError(
            "arrays_b[0]: expected the same y_true as arrays_a[0] (same test rows in the same order)"
        )
    sampler = _Resampler(n, groups)

    def diff(idx) -> float | None:
        sel_a = arrays_a if idx is None else tuple(a[idx] for a in arrays_a)
        sel_b = arrays_b if idx is None else tuple(b[idx] for b in arrays_b)
        ma = _as_float(metric_fn(*sel_a))
        mb = _as_float(metric_fn(*sel_b))
        return None if ma is None or mb is None else ma - mb

    values = []
    for drawn in sampler.draws(n_boot, seed):
        d = diff(sampler.rows(drawn))
        if d is not None:
            values.append(d)
    values = np.asarray(values, dtype=float)
    low, high = _interval(values, alpha)
    b = values.size
    if b:
        p_le = (1 + np.count_nonzero(values <= 0)) / (b + 1)
        p_ge = (1 + np.count_nonzero(values >= 0)) / (b + 1)
        p_value = float(min(1.0, 2 * min(p_le, p_ge)))
    else:
        p_value = None
    return {
        "diff": diff(None),
        "low": low,
        "high": high,
        "p_value": p_value,
        "n_boot": int(b),
        "n_boot_requested": int(n_boot),
        "seed": seed,
        "alpha": alpha,
    }


def holm(p_values) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the input order.

    With the m defined p-values sorted ascending p_(1) <= ... <= p_(m), the
    adjusted value of p_(i) is ``max_{j <= i} min(1, (m - j + 1) p_(j))``.
    None/NaN entries (comparisons that could not be made) stay NaN and do not
    count in m. Ties keep their input order (the adjusted values of tied
    p-values are equal anyway).
    """
    p = np.array(
        [np.nan if v is None else v for v in np.ravel(np.asarray(p_values, dtype=object))],
        dtype=float,
    )
    defined = ~np.isnan(p)
    if np.any((p[defined] < 0) | (p[defined] > 1)):
        raise ValueError(
            f"p_values: expected values in [0, 1], got {p[defined].min():g}..{p[defined].max():g}"
        )
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(defined)
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def mean_sd(values) -> tuple[float | None, float | None, int]:
    """Mean, sample standard deviation (ddof=1) and count of the defined values.

    None/NaN entries (a seed where the metric was undefined) are ignored and not
    counted. The mean is None when n == 0, the sd is None when n < 2.
    """
    arr = np.array(
        [np.nan if v is None else v for v in np.ravel(np.asarray(values, dtype=object))],
        dtype=float,
    )
    arr = arr[~np.isnan(arr)]
    n = int(arr.size)
    mean = float(arr.mean()) if n else None
    sd = float(arr.std(ddof=1)) if n >= 2 else None
    return mean, sd, n


def summarise_seeds(df: pd.DataFrame, by: list[str], value: str = "value") -> pd.DataFrame:
    """Per group of ``by`` columns: mean, sd (ddof=1), n, min and max of ``value``.

    Missing values are skipped and not counted in n; sd is NaN when n < 2 (the
    pandas convention, unlike :func:`mean_sd`). Groups keep their order of first
    appearance and rows with missing keys form their own group (not dropped).
    """
    by = [by] if isinstance(by, str) else list(by)
    if not by:
        raise ValueError("by: expected at least one grouping column")
    missing = [c for c in [*by, value] if c not in df.columns]
    if missing:
        raise ValueError(f"df: expected columns {missing} (have {list(df.columns)})")
    if not pd.api.types.is_numeric_dtype(df[value]):
        raise ValueError(f"df[{value!r}]: expected numeric values, got dtype {df[value].dtype}")
    g = df.groupby(by, sort=False, dropna=False)[value]
    out = g.agg(
        mean="mean", sd=lambda s: s.std(ddof=1), n="count", min="min", max="max"
    ).reset_index()
    out["n"] = out["n"].astype(int)
    return out


# ----------------------------------------------------------------------------- seeds × test groups
#
# The comparison design of the tables (docs/statistics.md). A cell's test score varies with the
# training run (seed) and with the finite test set (which lesions / patients it holds). Seeds and
# test groups are *crossed*: every seed's model is scored on the same test images. With
#   x[s, i] = mu + a[s] + t[i] + e[s, i]        (seed effect a, test-group effect t, interaction e)
# the mean over S seeds of a metric on G test groups has variance
#   V = var(a) / S + var(t) / G + var(e) / (S G).
# Two moment estimates on the data we have:
#   * the variance of the S full-test-set values over seeds, divided by S, estimates
#     var(a) / S + var(e) / (S G)                                               (v_seed);
#   * a group bootstrap (one draw of G test groups shared by all seeds, B replicates) gives
#     B1 = var_b(mean_s x*[s, b]) ≈ var(t) / G + var(e) / (S G) and
#     B2 = mean_s var_b(x*[s, b]) ≈ var(t) / G + var(e) / G,
#     so var(t) / G ≈ B1 − (B2 − B1) / (S − 1)                                  (v_test, floored at 0).
# V = v_seed + v_test is unbiased for the variance above (adding B1 instead of v_test would count the
# interaction twice: conservative by up to a factor 2 on that part). The reference distribution is
# Student's t with Welch–Satterthwaite degrees of freedom, S − 1 for v_seed and G − 1 for v_test, so
# with three seeds and a seed-dominated variance the test is the one-sample t-test on the three
# per-seed values (df ≈ 2), and with a test-set-dominated variance it is the group-bootstrap z-test.
# With one seed, v_seed cannot be estimated: the result then describes this one training run only
# (``seed_variance`` False), which the tables state.


def replicate_values(
    metric_fn: MetricFn,
    arrays: tuple[np.ndarray, ...],
    groups: np.ndarray | None,
    n_boot: int = 1000,
    seed: int = 0,
    weighted: Callable | None = None,
    chunk: int = 250,
) -> np.ndarray:
    """The metric on each of ``n_boot`` group-bootstrap replicates of the test set (NaN: undefined).

    The draws depend only on the number of groups and ``seed``, and groups are coded in sorted
    order of their ids, so cells scored on the same test set (same group ids) get the same
    replicates whatever their row order: replicate b is the same multiset of lesions/patients for
    every method and seed, which is what pairs them.

    ``weighted`` (e.g. :func:`imbench.metrics.weighted_fn`) computes the metric of ``chunk``
    replicates at once from their row multiplicities; without it ``metric_fn`` runs once per
    replicate on the resampled rows. Both give the same values.
    """
    _check_common(n_boot, 0.05)
    arrays = _check_arrays("arrays", arrays)
    sampler = _Resampler(arrays[0].shape[0], groups)
    draws = sampler.draws(n_boot, seed)
    if weighted is not None:
        codes = np.empty(arrays[0].shape[0], dtype=np.int64)
        codes[sampler.order] = np.repeat(np.arange(sampler.n_groups), sampler.sizes)
        out = []
        for start in range(0, n_boot, chunk):
            d = draws[start : start + chunk]
            counts = np.zeros((d.shape[0], sampler.n_groups))
            np.add.at(counts, (np.repeat(np.arange(d.shape[0]), d.shape[1]), d.ravel()), 1.0)
            out.append(np.asarray(weighted(*arrays, counts[:, codes]), dtype=float))
        values = np.concatenate(out)
        values[~np.isfinite(values)] = np.nan
        return values
    out = np.full(n_boot, np.nan)
    for b, drawn in enumerate(draws):
        idx = sampler.rows(drawn)
        v = _as_float(metric_fn(*(a[idx] for a in arrays)))
        if v is not None:
            out[b] = v
    return out


def n_groups(groups: np.ndarray | None, n_rows: int) -> int:
    """Number of distinct test groups (rows when ``groups`` is None)."""
    return n_rows if groups is None else int(np.unique(np.asarray(groups)).size)


def seeds_tests_mean(
    full, reps, n_test_groups: int, alpha: float = 0.05, null: float = 0.0
) -> dict:
    """Mean over seeds with an interval and test counting seed and test-set variance.

    Args:
        full: (S,) the metric (or a paired difference) of each seed on the whole test set.
        reps: (S, B) the same on B group-bootstrap replicates shared by all seeds (NaN: undefined;
            a replicate undefined for any seed is dropped).
        n_test_groups: G, the number of test groups (degrees of freedom of the test-set part).
        alpha: 1 − coverage of the interval.
        null: the value tested (0 for a paired difference).

    Returns:
        ``{"estimate", "se", "df", "low", "high", "p_value", "n_seeds", "n_boot", "v_seed",
        "v_test", "seed_variance"}`` (design and formulas in the comment above). ``p_value`` is
        two-sided. When the total variance is 0 the interval is the point and p is 1 if the
        estimate equals ``null``, else 0.
    """
    from scipy import stats as st

    if not 0 < alpha < 1:
        raise ValueError(f"alpha: expected a number in (0, 1), got {alpha!r}")
    full = np.asarray(full, dtype=float).ravel()
    reps = np.asarray(reps, dtype=float)
    if reps.ndim == 1:
        reps = reps[None, :]
    s = full.size
    if s == 0:
        raise ValueError("full: expected at least one seed")
    if reps.shape[0] != s:
        raise ValueError(f"reps: expected {s} rows (one per seed), got shape {reps.shape}")
    if not np.all(np.isfinite(full)):
        raise ValueError(f"full: expected finite values, got {full.tolist()}")
    reps = reps[:, np.all(np.isfinite(reps), axis=0)]
    b = reps.shape[1]
    g = int(n_test_groups)
    estimate = float(full.mean())
    v_seed = float(full.var(ddof=1) / s) if s >= 2 else 0.0
    if b >= 2 and g >= 2:
        b1 = float(reps.mean(axis=0).var(ddof=1))
        if s >= 2:
            b2 = float(reps.var(axis=1, ddof=1).mean())
            v_test = max(b1 - (b2 - b1) / (s - 1), 0.0)
        else:
            v_test = b1
    else:
        v_test = 0.0
    v = v_seed + v_test
    parts = (v_seed**2 / (s - 1) if s >= 2 else 0.0) + (v_test**2 / (g - 1) if g >= 2 else 0.0)
    df = float(v * v / parts) if parts > 0 else float(max(g - 1, 1))
    if v > 0:
        se = math.sqrt(v)
        t = (estimate - null) / se
        p = float(min(1.0, 2 * st.t.sf(abs(t), df)))
        half = float(st.t.ppf(1 - alpha / 2, df)) * se
        low, high = estimate - half, estimate + half
    else:
        se = 0.0
        p = 1.0 if estimate == null else 0.0
        low = high = estimate
    return {
        "estimate": estimate,
        "se": se,
        "df": df,
        "low": low,
        "high": high,
        "p_value": p,
        "n_seeds": int(s),
        "n_boot": int(b),
        "v_seed": v_seed,
        "v_test": v_test,
        "seed_variance": s >= 2,
    }


def seed_t_interval(values, alpha: float = 0.05) -> tuple[float | None, float | None]:
    """Student-t interval of the mean over seeds (training variance on this test set only).

    ``mean ± t(1 − alpha/2, n − 1) · sd / sqrt(n)`` over the defined values; (None, None) when
    fewer than two values are defined.
    """
    from scipy import stats as st

    mean, sd, n = mean_sd(values)
    if n < 2:
        return None, None
    half = float(st.t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def smallest_adjusted_p(
    family_size: int, n_seeds: int, n_boot: int, n_test_groups: int = 100
) -> float:
    """Holm-adjusted p of the strongest contrast a family of ``family_size`` comparisons can show.

    Runs :func:`seeds_tests_mean` on an extreme outcome: the method is right on every one of
    ``n_test_groups`` single-image test groups for every seed, the baseline right on each with
    probability 1/2, independently per seed (so both variance parts are non-zero), with
    ``n_boot`` replicates; the p-value is multiplied by the family size (Holm's factor for the
    smallest p of a family). A bootstrap p-value could not go below 2 / (B + 1) before that
    factor; the t-based p has no such floor, so the grid size alone never rules significance out.
    """
    rng = np.random.default_rng(0)
    g = int(n_test_groups)
    draws = _Resampler(g, None).draws(n_boot, 0)
    full, reps = [], []
    for _ in range(n_seeds):
        diff = 1.0 - (rng.random(g) < 0.5)  # method right (1) minus baseline right (0 or 1)
        full.append(diff.mean())
        reps.append(diff[draws].mean(axis=1))
    r = seeds_tests_mean(np.array(full), np.array(reps), g)
    return float(min(1.0, family_size * r["p_value"]))
