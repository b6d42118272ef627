"""Batch samplers for the data-level imbalance methods (SPEC §4: ``ros``, ``rus``, ``batch_balanced``;
and ``drs``).

Every sampler here is a PyTorch ``batch_sampler``: iterating it yields one batch (a list of dataset
indices) at a time, so it plugs into ``DataLoader(dataset, batch_sampler=...)``.

Reproducibility contract (what makes a resumed run repeat the same batches):

* the indices drawn for an epoch are a pure function of ``(seed, epoch)``; nothing reads the global
  NumPy / PyTorch RNG state;
* the sampler does *not* advance its epoch by itself: the training loop calls ``set_epoch(epoch)``
  before iterating (the ``DistributedSampler`` convention). Iterating twice without ``set_epoch``
  repeats the same epoch.

Sampler ids
-----------
``shuffle``
    Plain training: every sample exactly once per epoch in a fresh random order. The last, partial
    batch is kept.
``ros``
    Random over-sampling, imbalanced-learn ``RandomOverSampler(sampling_strategy='auto')``: every
    class except the majority is topped up with replacement to the majority count ``n_max`` and all
    originals are kept, so an epoch has ``K * n_max`` samples, shuffled, last partial batch kept.
``rus``
    Random under-sampling, imbalanced-learn ``RandomUnderSampler(sampling_strategy='auto')``: every
    class except the minority is cut *without* replacement to the minority count ``n_min``; epoch =
    ``K * n_min`` samples, shuffled, last partial batch kept.
``batch_balanced``
    Every batch holds ``B // K`` samples of each class (each drawn with replacement from that class);
    the ``B - K * (B // K)`` remaining slots each go to a class drawn uniformly at random (with
    replacement), then one sample of it. The batch is shuffled. An epoch is ``ceil(N / B)`` full
    batches of ``B``; every epoch draws afresh. This is the pytorch-ada ``BalancedBatchSampler``
    guarantee (``B // K`` per class) plus the SPEC's uniform remainder and ``ceil`` epoch length.

``drs``
    Deferred re-sampling (Cao et al. NeurIPS 2019): the epochs before ``⌊drs_start · E⌋`` (``E`` =
    ``num_epochs``, the training length; the same switch as ``ldam_drw``'s ``drw_start``) are the
    ``shuffle`` epochs of the same seed, batch for batch. From that epoch on, an epoch is ``N``
    draws *with replacement*, sample ``i`` drawn with probability proportional to the
    class-balanced weight ``(1 - beta) / (1 - beta^{n_c(i)})`` of its class (``beta`` 0.9999): the
    ``ImbalancedDatasetSampler`` of the official code (kaidic/LDAM-DRW ``utils.py``). A class then
    gets ``n_c w_c / sum_j n_j w_j`` of the draws: about the same share for classes of a few hundred
    samples, somewhat more for a class of thousands (HAM10000's nv: 18 % rather than 1/7). The
    official script builds that sampler for ``--train_rule Resample`` but its loader keeps the
    plain sampler it was created with; the deferred schedule is the paper's (re-balancing from the
    first learning-rate decay on, epoch 160 of 200 in its CIFAR runs). Sampler epochs past ``E``
    (the ``steps`` budget's extra epochs ``e + j·E``) take the phase of ``e mod E``.

``ros`` and ``rus`` take ``redraw`` (default ``False``). ``False`` follows imbalanced-learn, where
the data set is resampled once: the resampled multiset is drawn once from ``seed`` and only its
order changes per epoch. ``True`` draws a fresh resample every epoch.

Classes
-------
``K`` is the number of *sampling classes present in the training labels*. A class id that has no
training sample (e.g. labels ``{0, 2}`` of a 3-class task) is simply absent from every batch: it is
neither an error nor padded with other samples. With a single class present, ``ros`` and ``rus``
have nothing to balance and return the training set itself (imbalanced-learn would raise).

Multi-label tasks (``labels`` a 2-D 0/1 matrix) sample by :func:`sampling_classes`: each sample's
rarest positive label, and an extra "none" class ``K_labels`` for samples with no positive label.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterator

import numpy as np
import torch.utils.data

__all__ = ["SAMPLER_DEFAULTS", "BatchSampler", "make_batch_sampler", "sampling_classes"]

from .tables import SAMPLER_DEFAULTS, SAMPLER_PARAMS  # noqa: E402  (torch-free: read by the configuration checks)

# Independent random streams derived from the seed: the resample (which samples) and the order
# (how they are arranged into batches) must not share draws, or ``redraw=False`` would couple them.
_STREAM_ORDER = 0
_STREAM_RESAMPLE = 1


def _rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, stream])


def _as_labels(labels) -> np.ndarray:
    """Validate ``labels`` (1-D class ids or 2-D 0/1 matrix) and return them as an int64 array."""
    arr = np.asarray(labels)
    if arr.ndim not in (1, 2):
        raise ValueError(f"labels must be 1-D class ids or a 2-D 0/1 matrix, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("labels is empty: a sampler needs at least one training sample")
    if arr.ndim == 2 and arr.shape[1] == 0:
        raise ValueError("multi-label labels have zero columns")
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        if (
            not np.issubdtype(arr.dtype, np.floating)
            or not np.all(np.isfinite(arr))
            or np.any(arr != np.round(arr))
        ):
            raise ValueError(
                f"labels must be integers, got dtype {arr.dtype} with non-integer values"
            )
    arr = arr.astype(np.int64)
    if arr.ndim == 1 and arr.min() < 0:
        raise ValueError(f"class labels must be >= 0, got {arr.min()}")
    if arr.ndim == 2 and not np.isin(arr, (0, 1)).all():
        raise ValueError("multi-label labels must contain only 0 and 1")
    return arr


def sampling_classes(labels) -> np.ndarray:
    """Return the class each training sample is sampled by.

    1-D ``labels``: the labels themselves. 2-D 0/1 matrix ``(N, K)``: for each sample, its rarest
    positive label, i.e. the positive label with the smallest positive count *in these labels* (the
    training set); ties go to the lower label index. Samples with no positive label get the extra
    "none" class ``K``.
    """
    arr = _as_labels(labels)
    if arr.ndim == 1:
        return arr.copy()
    n_labels = arr.shape[1]
    pos_counts = arr.sum(axis=0).astype(float)
    # Negatives get +inf so argmin only picks among positives; argmin returns the first minimum,
    # which is the lower index on ties.
    keyed = np.where(arr == 1, pos_counts[None, :], np.inf)
    classes = np.argmin(keyed, axis=1).astype(np.int64)
    classes[arr.sum(axis=1) == 0] = n_labels
    return classes


def _resolve_params(sampler_id: str, params: dict) -> dict:
    if sampler_id not in SAMPLER_DEFAULTS:
        raise ValueError(f"unknown sampler {sampler_id!r}; allowed: {', '.join(SAMPLER_DEFAULTS)}")
    defaults = SAMPLER_DEFAULTS[sampler_id]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) or "none"
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for sampler {sampler_id!r}; allowed: {allowed}"
        )
    resolved = dict(defaults)
    for key, value in params.items():
        if value is None:
            continue
        try:
            resolved[key] = SAMPLER_PARAMS[sampler_id][key].check(value)
        except ValueError as exc:
            raise ValueError(f"sampler parameter {key}: {exc}") from None
    return resolved


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


class BatchSampler(torch.utils.data.Sampler[list[int]], abc.ABC):
    """Base class: epoch-indexed, seed-deterministic batch sampler.

    Attributes: ``sampler_id``, ``batch_size``, ``seed``, ``epoch``, ``params`` (resolved method
    parameters, JSON-serialisable), ``num_samples`` (samples per epoch), ``classes`` (sampling class
    of every training sample), ``class_counts`` (``{class: count}`` of the classes present).
    """

    def __init__(
        self,
        sampler_id: str,
        classes: np.ndarray,
        batch_size: int,
        seed: int,
        params: dict,
        num_epochs: int | None = None,
    ):
        super().__init__()
        self.num_epochs = num_epochs
        self.sampler_id = sampler_id
        self.classes = classes
        self.batch_size = batch_size
        self.seed = seed
        self.params = params
        self.epoch = 0
        present, counts = np.unique(classes, return_counts=True)
        self.class_counts = {int(c): int(n) for c, n in zip(present, counts)}
        # Training indices of each present class, in index order.
        self._members = {int(c): np.flatnonzero(classes == c) for c in present}

    @property
    def num_train(self) -> int:
        return int(self.classes.shape[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        self.epoch = _check_int("epoch", epoch, 0)

    @abc.abstractmethod
    def epoch_batches(self, epoch: int | None = None) -> list[np.ndarray]:
        """All batches of ``epoch`` (default: the current one) as int64 index arrays."""

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.epoch_batches():
            yield batch.tolist()

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(sampler_id={self.sampler_id!r}, batch_size={self.batch_size}, "
            f"seed={self.seed}, epoch={self.epoch}, params={self.params})"
        )


class _OrderedEpochSampler(BatchSampler):
    """An epoch is a multiset of indices, shuffled by ``(seed, epoch)`` and cut into batches."""

    @abc.abstractmethod
    def _epoch_pool(self, epoch: int) -> np.ndarray:
        """The indices of one epoch (with repeats), before shuffling."""

    def epoch_batches(self, epoch: int | None = None) -> list[np.ndarray]:
        epoch = self.epoch if epoch is None else _check_int("epoch", epoch, 0)
        pool = self._epoch_pool(epoch)
        order = _rng(self.seed, epoch, _STREAM_ORDER).permutation(pool.shape[0])
        flat = pool[order]
        return [flat[i : i + self.batch_size] for i in range(0, flat.shape[0], self.batch_size)]


class ShuffleSampler(_OrderedEpochSampler):
    """Every training sample once per epoch, fresh random order; last partial batch kept."""

    def __init__(self, *args):
        super().__init__(*args)
        self.num_samples = self.num_train

    def _epoch_pool(self, epoch: int) -> np.ndarray:
        return np.arange(self.num_train, dtype=np.int64)


class _ImblearnSampler(_OrderedEpochSampler):
    """ROS / RUS through imbalanced-learn on a dummy ``X`` holding the sample indices."""

    def __init__(self, *args):
        super().__init__(*args)
        counts = list(self.class_counts.values())
        target = max(counts) if self.sampler_id == "ros" else min(counts)
        self.num_samples = target * len(counts)
        self._fixed_pool = None if self.params["redraw"] else self._resample(draw=0)

    def _resample(self, draw: int) -> np.ndarray:
        if len(self.class_counts) == 1:  # nothing to balance; imbalanced-learn would raise here
            return np.arange(self.num_train, dtype=np.int64)
        # imbalanced-learn wants a legacy RandomState seed: derive a 32-bit one from (seed, draw).
        state = int(
            np.random.SeedSequence([self.seed, draw, _STREAM_RESAMPLE]).generate_state(1)[0]
        )
        if self.sampler_id == "ros":
            from imblearn.over_sampling import RandomOverSampler

            resampler = RandomOverSampler(sampling_strategy="auto", random_state=state)
        else:
            from imblearn.under_sampling import RandomUnderSampler

            resampler = RandomUnderSampler(
                sampling_strategy="auto", replacement=False, random_state=state
            )
        dummy_x = np.arange(self.num_train, dtype=np.int64).reshape(-1, 1)
        resampler.fit_resample(dummy_x, self.classes)
        pool = np.asarray(resampler.sample_indices_, dtype=np.int64)
        assert pool.shape[0] == self.num_samples, "imbalanced-learn 'auto' resample size changed"
        return pool

    def _epoch_pool(self, epoch: int) -> np.ndarray:
        return self._fixed_pool if self._fixed_pool is not None else self._resample(draw=epoch)


class BalancedBatchSampler(BatchSampler):
    """``B // K`` samples of every present class per batch, remainder to uniformly drawn classes."""

    def __init__(self, *args):
        super().__init__(*args)
        n_classes = len(self.class_counts)
        if self.batch_size < n_classes:
            raise ValueError(
                f"batch_balanced needs batch_size >= number of classes present "
                f"({n_classes}), got batch_size={self.batch_size}"
            )
        self.num_batches = math.ceil(self.num_train / self.batch_size)
        self.num_samples = self.num_batches * self.batch_size

    def __len__(self) -> int:
        return self.num_batches

    def epoch_batches(self, epoch: int | None = None) -> list[np.ndarray]:
        epoch = self.epoch if epoch is None else _check_int("epoch", epoch, 0)
        rng = _rng(self.seed, epoch, _STREAM_ORDER)
        present = list(self._members)
        per_class, remainder = divmod(self.batch_size, len(present))
        batches = []
        for _ in range(self.num_batches):
            extra = rng.integers(len(present), size=remainder)  # uniform classes for the leftovers
            parts = []
            for slot, cls in enumerate(present):
                members = self._members[cls]
                n_draw = per_class + int(np.count_nonzero(extra == slot))
                parts.append(members[rng.integers(members.shape[0], size=n_draw)])
            batch = np.concatenate(parts)
            batches.append(batch[rng.permutation(batch.shape[0])])
        return batches


class DeferredResampler(_OrderedEpochSampler):
    """``drs``: the ``shuffle`` epochs, then class-balanced draws with replacement (see the module doc)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.num_samples = self.num_train
        from .losses import class_balanced_weights

        present = list(self.class_counts)
        w = class_balanced_weights([self.class_counts[c] for c in present], self.params["beta"])
        per_sample = np.zeros(self.num_train)
        for c, wc in zip(present, w):
            per_sample[self._members[c]] = wc
        self._draw_p = per_sample / per_sample.sum()

    @property
    def switch_epoch(self) -> int:
        """First 0-based epoch that re-samples: ⌊drs_start · num_epochs⌋ (``drw_switch_epoch``)."""
        from .losses import drw_switch_epoch

        if self.num_epochs is None:
            raise ValueError(
                "sampler 'drs' needs num_epochs (the training length) to place its switch "
                "from plain to class-balanced sampling"
            )
        return drw_switch_epoch(self.num_epochs, self.params["drs_start"])

    def resampling(self, epoch: int | None = None) -> bool:
        """Whether ``epoch`` (default: the current one) draws class-balanced."""
        epoch = self.epoch if epoch is None else _check_int("epoch", epoch, 0)
        switch = self.switch_epoch  # raises first when num_epochs is missing
        return epoch % self.num_epochs >= switch

    def _epoch_pool(self, epoch: int) -> np.ndarray:
        if not self.resampling(epoch):
            return np.arange(self.num_train, dtype=np.int64)
        rng = _rng(self.seed, epoch, _STREAM_RESAMPLE)
        return rng.choice(self.num_train, size=self.num_train, replace=True, p=self._draw_p).astype(
            np.int64
        )


_SAMPLER_CLASSES = {
    "shuffle": ShuffleSampler,
    "ros": _ImblearnSampler,
    "rus": _ImblearnSampler,
    "batch_balanced": BalancedBatchSampler,
    "drs": DeferredResampler,
}


def make_batch_sampler(
    sampler_id: str, labels, batch_size: int, seed: int, num_epochs: int | None = None, **params
) -> BatchSampler:
    """Build the batch sampler ``sampler_id`` over training ``labels``.

    Args:
        sampler_id: one of ``SAMPLER_DEFAULTS`` (``shuffle``, ``ros``, ``rus``, ``batch_balanced``, ``drs``).
        labels: training labels, 1-D class ids or a 2-D 0/1 multi-label matrix (see
            :func:`sampling_classes`); dataset index ``i`` is row ``i``.
        batch_size: ``B >= 1``; ``batch_balanced`` also needs ``B >= K`` (classes present).
        seed: non-negative integer; with the epoch it fixes every draw.
        num_epochs: the training length (``>= 1``); ``drs`` needs it to draw an epoch (its switch is a
            share of it), the others ignore it.
        **params: sampler parameters (``SAMPLER_DEFAULTS[sampler_id]``); ``None`` means the default.

    Raises:
        ValueError: unknown sampler or parameter, bad batch size / seed, empty or malformed labels.
    """
    resolved = _resolve_params(sampler_id, params)
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_int("seed", seed, 0)
    if num_epochs is not None:
        num_epochs = _check_int("num_epochs", num_epochs, 1)
    classes = sampling_classes(labels)
    return _SAMPLER_CLASSES[sampler_id](sampler_id, classes, batch_size, seed, resolved, num_epochs)
