"""Simulated experiments for testing the comparison statistics (power and type-I error).

A simulated test set has G groups (lesions) of 1–3 images with imbalanced labels (K = 4). Each
(method, seed) "model" gets each image right with probability
``sigmoid(1 + d_i + a_s + delta_method)``: ``d_i`` the image's difficulty (shared by all models:
test-set variance), ``a_s ~ N(0, seed_sd)`` a training-run effect (seed variance, drawn per method
and seed), and independent Bernoulli draws per (model, image) (seed × image interaction). A wrong
image is given one of the other classes at random. The predictions go through the same functions
as ``imbench aggregate`` (``cell_replicates`` → ``paired_table``).
"""

from __future__ import annotations

import numpy as np

from imbench.compare import cell_replicates, paired_table, resolve_evaluation

K = 4
PRIORS = [0.6, 0.25, 0.1, 0.05]


def simulate(
    rng: np.random.Generator,
    deltas: dict[str, float],
    n_seeds: int = 3,
    n_groups: int = 150,
    seed_sd: float = 0.3,
    difficulty_sd: float = 1.5,
) -> tuple[list[dict], dict[str, dict]]:
    """Cells and test predictions of one simulated experiment; ``deltas`` maps method → logit shift
    (``ce`` is added with 0)."""
    sizes = rng.integers(1, 4, n_groups)
    groups = np.repeat(np.arange(n_groups), sizes).astype(str)
    n = groups.size
    y = rng.choice(K, size=n, p=PRIORS)
    difficulty = rng.normal(0.0, difficulty_sd, n_groups)[np.repeat(np.arange(n_groups), sizes)]
    ids = np.array([f"img{i}" for i in range(n)])
    cells, preds = [], {}
    for method, delta in {"ce": 0.0, **deltas}.items():
        for s in range(n_seeds):
            a = rng.normal(0.0, seed_sd)
            right = rng.random(n) < 1.0 / (1.0 + np.exp(-(1.0 + difficulty + a + delta)))
            pred = np.where(right, y, (y + rng.integers(1, K, n)) % K)
            probs = np.full((n, K), 0.1)
            probs[np.arange(n), pred] = 0.7
            key = f"{method}/seed{s}"
            cells.append(
                {
                    "task": "sim",
                    "model": "m",
                    "method": method,
                    "seed": s,
                    "kind": "multiclass",
                    "dir": key,
                }
            )
            preds[key] = {
                "label": y,
                "probs": probs,
                "pred": pred,
                "group": groups,
                "image_id": ids,
            }
    return cells, preds


def paired(rng, deltas, metric: str = "accuracy", n_boot: int = 100, **kwargs):
    """``paired_table`` of one simulated experiment (tested metric ``metric``)."""
    cells, preds = simulate(rng, deltas, **kwargs)
    spec = resolve_evaluation({"headline": metric}, "multiclass")
    reps = cell_replicates(cells, preds, {"sim": spec}, n_boot=n_boot, seed=0)
    return paired_table(reps)
