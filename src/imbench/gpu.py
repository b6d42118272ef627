"""GPU leases for local multi-GPU runs.

Snakemake counts GPUs (``resources: gpu=1`` with ``--resources gpu=N``) but never says *which* GPU a
job should use (snakemake/snakemake#281). A training job therefore leases one device itself: it
takes an exclusive, non-blocking ``flock`` on one lock file per device and keeps it for its
lifetime. The kernel releases a flock when the process dies, even on SIGKILL, so a killed job never
leaves a device marked busy.

The pool is ``CUDA_VISIBLE_DEVICES`` when set (so under SLURM, which already hands each job exactly
its devices, the lease picks among those — normally one, which makes it a no-op), else every device
``torch.cuda.device_count()`` sees. The leased device is published by rewriting
``CUDA_VISIBLE_DEVICES`` before CUDA initialises, so the job then simply uses ``cuda:0``.

**Packing** (several small cells on one GPU): with ``slots_per_device`` = S > 1 (argument, or the
environment variable ``IMBENCH_GPU_SLOTS``; default 1) every device has S slots, one lock file
each (``gpu<id>.slot<k>.lock``), and a job leases one slot. Slots are filled across devices first
(slot 0 of every device, then slot 1, ...), so a grid smaller than the pool still spreads over the
devices, and at most S jobs share one. Snakemake's resources are integers (a fractional request
such as ``gpu=0.25`` is truncated to 0, which removes the limit), so when packing, the ``gpu``
resource counts slots: ``IMBENCH_GPU_SLOTS=4 snakemake --profile profiles/gpu --resources
gpu=<devices × 4>`` (docs/slurm.md, "One machine with several GPUs").
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def device_pool() -> list[str]:
    """Device ids this process may use: ``CUDA_VISIBLE_DEVICES`` entries, else 0..count-1."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no torch / no driver: no devices
        return []


def slots_per_device(value: int | str | None = None) -> int:
    """Jobs that may share one device: ``value``, else ``IMBENCH_GPU_SLOTS``, else 1."""
    raw = value if value is not None else os.environ.get("IMBENCH_GPU_SLOTS", "1")
    try:
        slots = int(raw)
    except (TypeError, ValueError):
        slots = 0
    if slots < 1 or str(raw).strip() != str(slots):
        raise ValueError(f"IMBENCH_GPU_SLOTS: expected an integer >= 1, got {raw!r}")
    return slots


def default_lock_dir() -> Path:
    return Path(
        os.environ.get("IMBENCH_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "imbench-gpu-locks")
    )


@contextlib.contextmanager
def gpu_lease(
    lock_dir: str | Path | None = None,
    timeout: float = 24 * 3600,
    poll: float = 2.0,
    log=print,
    slots: int | None = None,
) -> Iterator[str | None]:
    """Hold one device of the pool (one of its slots when packing) for the duration of the block;
    yields its id (None: no GPU).

    With no device, or one device and one slot, nothing is locked. Otherwise the first free slot is
    taken (:func:`slots_per_device`); if all are busy (more jobs than ``--resources gpu``), it
    waits up to ``timeout`` s.
    """
    pool = device_pool()
    slots = slots_per_device(slots)
    if not pool or (len(pool) == 1 and slots == 1):
        yield pool[0] if pool else None
        return
    lock_dir = Path(lock_dir or default_lock_dir())
    lock_dir.mkdir(parents=True, exist_ok=True)
    # slot 0 of every device, then slot 1, ...: spread first, then share
    candidates = [(dev, k) for k in range(slots) for dev in pool]
    deadline = time.monotonic() + timeout
    while True:
        for dev, k in candidates:
            name = f"gpu{dev}.lock" if slots == 1 else f"gpu{dev}.slot{k}.lock"
            fh = open(lock_dir / name, "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            previous = os.environ.get("CUDA_VISIBLE_DEVICES")
            os.environ["CUDA_VISIBLE_DEVICES"] = dev
            where = f"GPU {dev}" if slots == 1 else f"GPU {dev} slot {k + 1}/{slots}"
            log(f"leased {where} (pool {','.join(pool)}, locks in {lock_dir})")
            try:
                yield dev
            finally:
                if previous is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = previous
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"no free GPU among {pool} ({slots} slot(s) each) after {timeout:.0f} s "
                f"(locks in {lock_dir})"
            )
        time.sleep(poll)
