"""Comparing methods: headline metrics, paired tests against the baseline, intervals, ranking.

The design is described in ``docs/statistics.md``; in short:

* **Metrics per experiment.** ``evaluation.headline`` names the metric the experiment is judged by
  (the source paper's own metric in each paper experiment), ``evaluation.tested`` the metrics that
  get paired tests (default: the headline), ``evaluation.metrics`` those shown in the pivots. Each
  is a metric name, a list, or a mapping from task kind to either (tasks of several kinds in one
  experiment); a kind not mapped gets :data:`DEFAULT_HEADLINE` / :data:`DEFAULT_TABLE_METRICS`.
* **One test per (task, model, method, metric)** against the baseline (``ce``), over all the seeds
  the two share, counting seed-to-seed and test-set variance (:func:`imbench.stats.seeds_tests_mean`
  on the per-seed paired differences and their group-bootstrap replicates: the same resampled
  lesions/patients for both methods and every seed).
* **The family** of the Holm correction is the methods compared with the baseline within one
  (task, model, metric).
* **Ranking over tasks** (Demšar 2006): each method's rank in every block, Friedman's test and the
  Nemenyi critical-difference diagram of ``scikit-posthocs``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import HEADLINE as DEFAULT_HEADLINE
from .metrics import KINDS, check_shot_thresholds, metric_names, scalar_fn, weighted_fn
from .stats import holm, n_groups, replicate_values, seed_t_interval, seeds_tests_mean

KEYS = ["task", "model", "method", "seed"]
BASELINE = "ce"
#: Metrics shown in each task's pivots (besides the headline) when ``evaluation.metrics`` is not set.
DEFAULT_TABLE_METRICS = {
    "multiclass": ["macro_f1", "accuracy", "balanced_accuracy", "macro_auc"],
    "binary": ["f1", "auprc", "auc", "balanced_accuracy", "sensitivity", "specificity"],
    "multilabel": ["odir_score", "macro_f1", "mean_f2", "macro_auc", "map"],
}
#: Metrics where a smaller value is better (never a headline: ranks assume larger is better).
LOWER_IS_BETTER = frozenset({"ece", "log_loss"})
EVALUATION_KEYS = ("headline", "tested", "metrics")


def _for_kind(value, kind: str):
    """``value`` itself, or ``value[kind]`` when it is a per-kind mapping (None if not mapped)."""
    if isinstance(value, dict):
        return value.get(kind)
    return value


def resolve_evaluation(spec: dict | None, kind: str) -> dict:
    """``{"headline": str, "tested": [str], "metrics": [str]}`` of a task kind from ``evaluation``.

    A plain list of ``metrics`` keeps the names defined for ``kind`` (an experiment may mix kinds);
    ``headline`` and ``tested`` must be defined for the kind (checked by :func:`check_evaluation`).
    """
    spec = spec or {}
    names = set(metric_names(kind))
    headline = _for_kind(spec.get("headline"), kind) or DEFAULT_HEADLINE[kind]
    tested = _for_kind(spec.get("tested"), kind) or [headline]
    tested = [tested] if isinstance(tested, str) else list(tested)
    metrics = _for_kind(spec.get("metrics"), kind)
    if metrics is None:
        metrics = DEFAULT_TABLE_METRICS[kind]
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    metrics = [m for m in metrics if m in names]
    return {
        "headline": headline,
        "tested": list(dict.fromkeys([headline, *tested])),
        "metrics": list(dict.fromkeys(metrics)),
    }


def check_evaluation(spec: dict | None, kinds) -> None:
    """Raise ``ValueError`` (one line naming the key) for an ``evaluation`` section that cannot work
    for the task kinds of the grid."""
    spec = spec or {}
    kinds = list(dict.fromkeys(kinds))
    if spec.get("shot_thresholds") is not None:
        check_shot_thresholds(spec["shot_thresholds"])
    for key in EVALUATION_KEYS:
        value = spec.get(key)
        if value is None:
            continue
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(KINDS))
            if unknown:
                raise ValueError(
                    f"config key 'evaluation.{key}': unknown task kind(s) {unknown}; "
                    f"allowed: {list(KINDS)}"
                )
            items = [(f"evaluation.{key}.{k}", v, [k]) for k, v in value.items()]
        else:
            items = [(f"evaluation.{key}", value, kinds)]
        for name, v, for_kinds in items:
            if key == "headline" and not isinstance(v, str):
                raise ValueError(f"config key '{name}': expected one metric name, got {v!r}")
            vals = [v] if isinstance(v, str) else v
            if not isinstance(vals, list) or not vals or not all(isinstance(x, str) for x in vals):
                raise ValueError(
                    f"config key '{name}': expected a metric name or a non-empty list of "
                    f"metric names, got {v!r}"
                )
            for metric in vals:
                defined = [k for k in for_kinds if metric in metric_names(k)]
                if key == "metrics" and not isinstance(value, dict):
                    ok = bool(defined) or not kinds
                    if not ok:
                        raise ValueError(
                            f"config key '{name}': {metric!r} is not a metric of any task kind "
                            f"in the grid ({', '.join(kinds)})"
                        )
                    continue
                missing = [
                    k
                    for k in for_kinds
                    if k not in defined and (k in kinds or isinstance(value, dict))
                ]
                if missing:
                    raise ValueError(
                        f"config key '{name}': {metric!r} is not a {missing[0]} metric; expected "
                        f"one of {metric_names(missing[0])}"
                    )
                if key == "headline" and metric in LOWER_IS_BETTER:
                    raise ValueError(
                        f"config key '{name}': {metric!r} is smaller-is-better; a headline must "
                        "be a metric where larger is better (rankings assume it)"
                    )


# ----------------------------------------------------------------------------- replicates


def load_test_predictions(cells: list[dict]) -> dict[str, dict]:
    """Each cell's test predictions (``read_predictions``), keyed by cell folder."""
    from .predictions import read_predictions

    return {
        c["dir"]: read_predictions(
            Path(c["dir"]) / "predictions.csv", c["classes"], multilabel=c["kind"] == "multilabel"
        )["test"]
        for c in cells
    }


def cell_replicates(
    cells: list[dict], preds: dict[str, dict], specs: dict[str, dict], n_boot: int, seed: int
) -> dict[tuple, dict]:
    """Per (task, model, method, seed, metric) of the tested metrics: the value on the whole test
    set (``full``), on ``n_boot`` group-bootstrap replicates (``reps``), the number of test groups
    and the sorted test image ids (to check that paired cells saw the same images)."""
    out = {}
    for c in cells:
        p = preds[c["dir"]]
        arrays = (p["label"], p["probs"], p["pred"])
        g = n_groups(p["group"], p["label"].shape[0])
        ids = np.sort(p["image_id"].astype(str))
        for metric in specs[c["task"]]["tested"]:
            fn = scalar_fn(c["kind"], metric)
            full = fn(*arrays)
            out[(*(c[k] for k in KEYS), metric)] = {
                "full": np.nan if full is None else float(full),
                "reps": replicate_values(
                    fn,
                    arrays,
                    p["group"],
                    n_boot=n_boot,
                    seed=seed,
                    weighted=weighted_fn(c["kind"], metric),
                ),
                "n_groups": g,
                "ids": ids,
                "dir": c["dir"],
            }
    return out


PAIRED_COLUMNS = [
    "task",
    "model",
    "method",
    "baseline",
    "metric",
    "n_seeds",
    "diff",
    "se",
    "df",
    "low",
    "high",
    "p_value",
    "p_holm",
    "family_size",
    "seed_variance",
    "v_seed",
    "v_test",
    "n_groups",
    "n_boot",
]


def paired_table(
    reps: dict[tuple, dict], baseline: str = BASELINE, alpha: float = 0.05
) -> pd.DataFrame:
    """Every method against ``baseline``: one test per (task, model, method, metric) over the seeds both
    have; Holm within each (task, model, metric) family."""
    by_cell: dict[tuple, dict[int, dict]] = {}
    for (task, model, method, seed, metric), r in reps.items():
        by_cell.setdefault((task, model, method, metric), {})[seed] = r
    rows = []
    for (task, model, method, metric), seeds in by_cell.items():
        if method == baseline:
            continue
        base = by_cell.get((task, model, baseline, metric))
        if not base:
            continue
        common = sorted(set(seeds) & set(base))
        if not common:
            continue
        for s in common:
            if not np.array_equal(seeds[s]["ids"], base[s]["ids"]):
                raise ValueError(
                    f"aggregate: {seeds[s]['dir']} and {base[s]['dir']} were not tested on the "
                    "same images"
                )
        full = np.array([seeds[s]["full"] - base[s]["full"] for s in common])
        if not np.all(np.isfinite(full)):
            r = {
                "estimate": np.nan,
                "se": np.nan,
                "df": np.nan,
                "low": np.nan,
                "high": np.nan,
                "p_value": np.nan,
                "n_seeds": len(common),
                "n_boot": 0,
                "v_seed": np.nan,
                "v_test": np.nan,
                "seed_variance": False,
            }
        else:
            d = np.array([seeds[s]["reps"] - base[s]["reps"] for s in common])
            r = seeds_tests_mean(full, d, seeds[common[0]]["n_groups"], alpha=alpha)
        rows.append(
            {
                "task": task,
                "model": model,
                "method": method,
                "baseline": baseline,
                "metric": metric,
                "n_seeds": r["n_seeds"],
                "diff": r["estimate"],
                "se": r["se"],
                "df": r["df"],
                "low": r["low"],
                "high": r["high"],
                "p_value": r["p_value"],
                "seed_variance": r["seed_variance"],
                "v_seed": r["v_seed"],
                "v_test": r["v_test"],
                "n_groups": seeds[common[0]]["n_groups"],
                "n_boot": r["n_boot"],
            }
        )
    df = pd.DataFrame(
        rows, columns=[c for c in PAIRED_COLUMNS if c not in ("p_holm", "family_size")]
    )
    df["p_holm"] = np.nan
    df["family_size"] = 0
    for _, idx in df.groupby(["task", "model", "metric"], sort=False).groups.items():
        df.loc[idx, "p_holm"] = holm(df.loc[idx, "p_value"].tolist())
        df.loc[idx, "family_size"] = int(df.loc[idx, "p_value"].notna().sum())
    return df[PAIRED_COLUMNS]


def add_intervals(
    summary: pd.DataFrame, long: pd.DataFrame, reps: dict[tuple, dict], alpha: float = 0.05
) -> pd.DataFrame:
    """``summary`` with the interval of each across-seed mean.

    ``low``/``high``: Student-t interval over seeds (training variance on this test set), every row
    with two or more seeds. ``low_total``/``high_total``/``interval_seeds``: for the tested metrics of
    the test split, the interval counting seed and test-set variance (:func:`seeds_tests_mean`).
    """
    keys = ["task", "model", "method", "split", "metric"]
    seed_iv = (
        long.groupby(keys, sort=False, dropna=False)["value"]
        .apply(lambda v: pd.Series(seed_t_interval(v.tolist(), alpha), index=["low", "high"]))
        .unstack()
        .reset_index()
    )
    out = summary.merge(seed_iv, on=keys, how="left")
    by_arm: dict[tuple, list[dict]] = {}
    for (task, model, method, _seed, metric), r in reps.items():
        by_arm.setdefault((task, model, method, "test", metric), []).append(r)
    low_t, high_t = [], []
    for row in out[keys].itertuples(index=False):
        arms = by_arm.get(tuple(row))
        full = np.array([a["full"] for a in arms]) if arms else np.array([np.nan])
        if not arms or not np.all(np.isfinite(full)):
            low_t.append(np.nan)
            high_t.append(np.nan)
            continue
        r = seeds_tests_mean(
            full, np.array([a["reps"] for a in arms]), arms[0]["n_groups"], alpha=alpha
        )
        low_t.append(r["low"])
        high_t.append(r["high"])
    out["low_total"] = low_t
    out["high_total"] = high_t
    for col in ("low", "high"):
        out[col] = out[col].astype(float)
    return out


# ----------------------------------------------------------------------------- ranking


RANKING_COLUMNS = [
    "method",
    "mean_rank",
    "n_blocks",
    "blocks",
    "friedman_stat",
    "friedman_p",
    "metric",
]


def rank_blocks(
    long: pd.DataFrame, specs: dict[str, dict], methods: list[str]
) -> tuple[pd.DataFrame, str]:
    """A blocks × methods table of each block's headline (test, larger is better) and the block kind.

    Blocks are the experiment's (task, model) cells with each method's mean over seeds. With fewer
    than two such cells (e.g. the default grid: one task, one model), every (task, model, seed) is a
    block instead, and the returned kind says so. Only methods present in every block are kept (a
    method without meaning for one task kind drops out of the ranking).
    """
    test = long[long["split"] == "test"]
    rows = []
    for task, spec in specs.items():
        sub = test[(test["task"] == task) & (test["metric"] == spec["headline"])]
        rows.append(sub)
    sub = pd.concat(rows) if rows else test.iloc[:0]
    cells = sub[["task", "model"]].drop_duplicates()
    if len(cells) >= 2:
        table = sub.groupby(["task", "model", "method"])["value"].mean().unstack("method")
        kind = "task × model (mean over seeds)"
    else:
        table = sub.set_index(["task", "model", "seed", "method"])["value"].unstack("method")
        kind = "task × model × seed (fewer than two task × model cells)"
    keep = [m for m in methods if m in table.columns and table[m].notna().all()]
    return table[keep], kind


def ranking(
    long: pd.DataFrame, specs: dict[str, dict], methods: list[str], alpha: float = 0.05
) -> dict:
    """Average ranks (1 = best), Friedman's test and the Nemenyi post-hoc p-values.

    Returns ``{"table": DataFrame[RANKING_COLUMNS], "ranks": Series, "nemenyi": DataFrame | None,
    "blocks": str, "n_blocks": int, "friedman_p": float | None}``. Ties share the average rank
    (scipy ``rankdata``). Friedman's test needs at least three methods and two blocks; Nemenyi's
    p-values come from ``scikit_posthocs.posthoc_nemenyi_friedman``.
    """
    from scipy import stats as st

    table, kind = rank_blocks(long, specs, methods)
    metric = ", ".join(dict.fromkeys(s["headline"] for s in specs.values()))
    n_blocks, n_methods = table.shape
    empty = {
        "table": pd.DataFrame(columns=RANKING_COLUMNS),
        "ranks": pd.Series(dtype=float),
        "nemenyi": None,
        "blocks": kind,
        "n_blocks": n_blocks,
        "friedman_p": None,
        "metric": metric,
    }
    if n_blocks == 0 or n_methods < 2:
        return empty
    ranks = table.rank(axis=1, ascending=False, method="average")
    mean_rank = ranks.mean(axis=0)
    stat = p = None
    nemenyi = None
    if n_methods >= 3 and n_blocks >= 2:
        res = st.friedmanchisquare(*[table[m].to_numpy() for m in table.columns])
        stat, p = float(res.statistic), float(res.pvalue)
        if not np.isfinite(p):  # every block ranks all methods equally
            stat, p = None, None
        else:
            import scikit_posthocs as sp

            nemenyi = sp.posthoc_nemenyi_friedman(table.to_numpy())
            nemenyi.index = nemenyi.columns = list(table.columns)
    out = pd.DataFrame(
        {
            "method": mean_rank.index,
            "mean_rank": mean_rank.to_numpy(),
            "n_blocks": n_blocks,
            "blocks": kind,
            "friedman_stat": stat,
            "friedman_p": p,
            "metric": metric,
        }
    )
    out = out.sort_values(["mean_rank", "method"], kind="stable").reset_index(drop=True)
    return {
        "table": out,
        "ranks": mean_rank,
        "nemenyi": nemenyi,
        "blocks": kind,
        "n_blocks": n_blocks,
        "friedman_p": p,
        "metric": metric,
    }


def ranking_markdown(r: dict, experiment: str, alpha: float = 0.05) -> str:
    parts = [f"# {experiment}: ranking of the methods", ""]
    if r["table"].empty:
        return "\n".join(parts + ["Too few methods or blocks to rank.", ""])
    fp = r["friedman_p"]
    parts += [
        f"Average rank (1 = best) of each method's test {r['metric']} over {r['n_blocks']} blocks "
        f"({r['blocks']}); ties share the average rank. "
        + (
            f"Friedman's test: p = {fp:.3g}. "
            if fp is not None
            else "Friedman's test: not computable "
            "(needs three methods and two blocks, and some difference between ranks). "
        )
        + f"Critical-difference diagram: Nemenyi post-hoc test at α = {alpha} (scikit-posthocs); "
        "methods joined by a bar do not differ significantly. Ranks over blocks of one task and model "
        "(seeds) describe these runs, not generality over data sets (Demšar 2006).",
        "",
        "| rank | method | mean rank |",
        "|---:|---|---:|",
    ]
    for i, row in enumerate(r["table"].itertuples(index=False), 1):
        parts.append(f"| {i} | {row.method} | {row.mean_rank:.2f} |")
    return "\n".join(parts) + "\n"


def cd_figure(r: dict, path: Path, alpha: float = 0.05) -> None:
    """The critical-difference diagram (``scikit_posthocs.critical_difference_diagram``); a plain
    rank chart with a note when Friedman's test cannot be computed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_path

    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.28 * max(len(r["ranks"]), 2)))
    if r["nemenyi"] is not None:
        import scikit_posthocs as sp

        sp.critical_difference_diagram(r["ranks"], r["nemenyi"], ax=ax, alpha=alpha)
        ax.set_title(
            f"mean rank of test {r['metric']} over {r['n_blocks']} blocks ({r['blocks']}); "
            f"Friedman p = {r['friedman_p']:.3g}; bars: Nemenyi p ≥ {alpha}",
            fontsize=8,
        )
    else:
        ranks = r["ranks"].sort_values()
        ax.barh(list(ranks.index), ranks.to_numpy(), color="grey")
        ax.invert_yaxis()
        ax.set_xlabel("mean rank (1 = best)")
        ax.set_title(
            "mean ranks; Friedman/Nemenyi not computable (too few methods or blocks)", fontsize=8
        )
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
