"""Mixing augmentations of the training step: ``mixup`` and ``remix``.

``mixup`` (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018; official code
facebookresearch/mixup-cifar10, ``mixup_data`` / ``mixup_criterion``)
    One ``λ ~ Beta(α, α)`` per batch and a random permutation ``j`` of the batch:
    ``x̃_i = λ x_i + (1 - λ) x_j``, and the loss ``λ L(z, y) + (1 - λ) L(z, y_perm)`` with the
    method's own loss ``L`` (cross-entropy for the registered ``mixup``). ``α = 1`` is the official
    code's default (``--alpha 1.``), the value of the paper's CIFAR runs and of Remix's long-tail
    baselines. Multi-label tasks: the same formula with the multi-hot targets (BCE is linear in
    its target, so this is BCE on the mixed multi-hot targets ``λ y_i + (1 - λ) y_j``).
``remix`` (Chou et al., "Remix: Rebalanced Mixup", ECCV 2020 Workshops; the paper's algorithm,
no official code)
    Inputs mixed as mixup; the label weight of each pair is re-assigned towards the minority class:
    with ``n_i``, ``n_j`` the training counts of the two samples' classes,
    ``λ_y = 0`` if ``n_i / n_j ≥ κ`` and ``λ < τ``; ``λ_y = 1`` if ``n_i / n_j ≤ 1/κ`` and
    ``1 - λ < τ``; otherwise ``λ_y = λ``. The loss is the per-sample
    ``λ_y CE(z_i, y_i) + (1 - λ_y) CE(z_i, y_j)``, averaged over the batch. ``κ = 3``, ``τ = 0.5``
    and ``α = 1`` are the paper's values. Remix compares the class counts of two samples, which has
    no meaning with several labels per image: it is defined for single-label tasks only (a grid
    with a multi-label task skips it with a message).

Randomness: the draws of epoch ``e`` come from ``numpy.random.default_rng(SeedSequence([seed, e,
MIX_STREAM]))``, one λ then one permutation per batch, so a resumed run mixes exactly as an
uninterrupted one and the draws are independent of the sampler's and the flips'.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .tables import MIXING_DEFAULTS, MIXING_KINDS, MIXING_PARAMS

__all__ = ["MIX_STREAM", "Mixer", "mixed_loss", "mixup_inputs", "remix_label_weights"]

#: the third entry of the per-epoch seed sequence of the mixing draws (a stream of its own).
MIX_STREAM = 0x6D6978


def mixup_inputs(x: torch.Tensor, lam: float, perm: torch.Tensor) -> torch.Tensor:
    """``λ x + (1 - λ) x[perm]`` (a new tensor; ``x`` is left as it is)."""
    return lam * x + (1.0 - lam) * x[perm]


def remix_label_weights(
    lam: float, y_a: torch.Tensor, y_b: torch.Tensor, counts: torch.Tensor, kappa: float, tau: float
) -> torch.Tensor:
    """Remix's per-pair label weight ``λ_y`` of ``y_a`` (``1 - λ_y`` goes to ``y_b``)."""
    ratio = counts[y_a] / counts[y_b]
    out = torch.full(y_a.shape, float(lam), dtype=torch.float64, device=y_a.device)
    out[(ratio >= kappa) & (lam < tau)] = 0.0
    out[(ratio <= 1.0 / kappa) & (1.0 - lam < tau)] = 1.0
    return out


def mixed_loss(loss_fn, logits: torch.Tensor, y_a, y_b, lam) -> torch.Tensor:
    """The loss of a mixed batch.

    ``lam`` a number (mixup): ``λ loss_fn(z, y_a) + (1 - λ) loss_fn(z, y_b)`` (the official
    ``mixup_criterion``). ``lam`` a tensor of per-sample weights (remix): the batch mean of
    ``λ_i CE(z_i, y_a,i) + (1 - λ_i) CE(z_i, y_b,i)``.
    """
    if not torch.is_tensor(lam):
        return lam * loss_fn(logits, y_a) + (1.0 - lam) * loss_fn(logits, y_b)
    lam = lam.to(logits.dtype)
    ce_a = F.cross_entropy(logits, y_a, reduction="none")
    ce_b = F.cross_entropy(logits, y_b, reduction="none")
    return (lam * ce_a + (1.0 - lam) * ce_b).mean()


class Mixer:
    """The mixing step of one training run (``mixup`` or ``remix``).

    ``mix(x, y)`` returns the mixed inputs and what :meth:`loss` needs; call :meth:`set_epoch`
    at the start of every epoch. ``params`` holds the resolved parameters (recorded in run.json).
    """

    def __init__(self, mixing_id: str, class_counts, kind: str, seed: int, **params):
        if mixing_id not in MIXING_PARAMS:
            raise ValueError(f"unknown mixing {mixing_id!r}; allowed: {', '.join(MIXING_PARAMS)}")
        if kind not in MIXING_KINDS[mixing_id]:
            raise ValueError(
                f"{mixing_id} has no meaning for {kind} tasks "
                f"(it compares the class counts of two images); allowed: {', '.join(MIXING_KINDS[mixing_id])}"
            )
        resolved = dict(MIXING_DEFAULTS[mixing_id])
        for key, value in params.items():
            if key not in resolved:
                raise ValueError(
                    f"{mixing_id} has no parameter {key!r}; its parameters: {sorted(resolved)}"
                )
            if value is not None:
                try:
                    resolved[key] = MIXING_PARAMS[mixing_id][key].check(value)
                except ValueError as exc:
                    raise ValueError(f"parameter {key!r} of {mixing_id}: {exc}") from None
        self.mixing_id, self.kind, self.seed, self.params = mixing_id, kind, int(seed), resolved
        self.counts = torch.as_tensor(np.asarray(class_counts, dtype=np.float64))
        if mixing_id == "remix" and bool((self.counts <= 0).any()):
            raise ValueError("remix needs every class in training (a count ratio n_i / n_j)")
        self.rng = None

    def set_epoch(self, epoch: int) -> None:
        self.rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, MIX_STREAM]))

    def draw(self, n: int) -> tuple[float, np.ndarray]:
        """One batch's λ ~ Beta(α, α) and permutation (λ = 1 when α = 0, as the official code)."""
        alpha = self.params["alpha"]
        lam = float(self.rng.beta(alpha, alpha)) if alpha > 0 else 1.0
        return lam, self.rng.permutation(n)

    def mix(self, x: torch.Tensor, y: torch.Tensor):
        """``(x̃, (y_a, y_b, λ))``: λ a number (mixup) or per-sample weights (remix)."""
        if self.rng is None:
            raise RuntimeError("Mixer.set_epoch must be called before mix")
        lam, perm = self.draw(len(x))
        perm = torch.as_tensor(perm, device=x.device)
        y_b = y[perm]
        weights = lam
        if self.mixing_id == "remix":
            counts = self.counts.to(y.device)
            weights = remix_label_weights(
                lam, y, y_b, counts, self.params["kappa"], self.params["tau"]
            )
        return mixup_inputs(x, lam, perm), (y, y_b, weights)

    def loss(self, loss_fn, logits: torch.Tensor, mixed) -> torch.Tensor:
        y_a, y_b, lam = mixed
        return mixed_loss(loss_fn, logits, y_a, y_b, lam)
