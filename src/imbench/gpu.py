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


def default_lock_dir() -> Path:
    return Path(
        os.environ.get("IMBENCH_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "imbench-gpu-locks")
    )


@contextlib.contextmanager
def gpu_lease(
    lock_dir: str | Path | None = None, timeout: float = 24 * 3600, poll: float = 2.0, log=print
) -> Iterator[str | None]:
    """Hold one device of the pool for the duration of the block; yields its id (None: no GPU).

    With a pool of one device or none, nothing is locked. Otherwise the first free device is
    taken; if all are busy (more jobs than ``--resources gpu``), it waits up to ``timeout`` s.
    """
    pool = device_pool()
    if len(pool) <= 1:
        yield pool[0] if pool else None
        return
    lock_dir = Path(lock_dir or default_lock_dir())
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        for dev in pool:
            fh = open(lock_dir / f"gpu{dev}.lock", "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            previous = os.environ.get("CUDA_VISIBLE_DEVICES")
            os.environ["CUDA_VISIBLE_DEVICES"] = dev
            log(f"leased GPU {dev} (pool {','.join(pool)}, locks in {lock_dir})")
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
                f"no free GPU among {pool} after {timeout:.0f} s (locks in {lock_dir})"
            )
        time.sleep(poll)
