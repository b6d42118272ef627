"""GPU leases for local multi-GPU runs.

Snakemake counts GPUs (``resources: gpu=1`` with ``--resources gpu=N``) but never says *which* GPU a
job should use (snakemake/snakemake#281). A training job therefore leases one device itself and
keeps the lease for its lifetime. A lease is a small file in the lock directory
(``IMBENCH_GPU_LOCK_DIR``, default ``$TMPDIR/imbench-gpu-locks``) on which the job holds an
exclusive ``flock``; the kernel releases a flock when the process dies, even on SIGKILL, so a
killed job never leaves a device marked busy (its file is found unlocked and removed by the next
job that looks).

The pool is ``CUDA_VISIBLE_DEVICES`` when set (so under SLURM, which already hands each job exactly
its devices, the lease picks among those — normally one, which makes it a no-op unless packing is
on: leave ``IMBENCH_GPU_SLOTS`` unset there, docs/slurm.md), else every device
``torch.cuda.device_count()`` sees. The leased device is published by rewriting
``CUDA_VISIBLE_DEVICES`` before CUDA initialises, so the job then simply uses ``cuda:0``.

**Packing** (several small cells on one GPU): every device has a number of *slots*, and a job
takes one. ``IMBENCH_GPU_SLOTS`` (or the ``slots`` argument) sets it:

- an integer S (default 1): S slots on every device;
- ``auto``: derived from memory. A job's need is the largest peak device memory measured for jobs
  of the same *memory key* (for training: the model and the settings that set its memory, see
  :func:`imbench.train.memory_key`; the seed, task and method are not in it), plus a margin of
  :data:`MEMORY_MARGIN` of the peak and :data:`CONTEXT_BYTES` for the CUDA context, which the
  allocator does not count. A device of total memory M then has ``floor(M / need)`` slots (at
  least 1). ``IMBENCH_GPU_JOB_MEMORY`` (e.g. ``6GiB``, ``6000MB`` or bytes) replaces the
  measurement and is taken as the need as it is (no margin added). **Without a measurement (and
  without the override) a job counts as one slot per device, i.e. it has the device to itself**
  until a run of its key has finished, and its log line says so.

The measurements live in the lock directory (``peak_memory.json``: memory key → largest peak in
bytes): a job that leased with a memory key and finished without error records its process's
``torch.cuda.max_memory_reserved()`` there (training also writes the same figure into its
``run.json``, ``timings.peak_device_memory_bytes``), also when its lease locked nothing (one
device, one slot), so a plain run measures for a later packed one. A failed job records nothing
(an out-of-memory error would understate the need). The file outlives the runs: peaks are per
machine, kept as the largest seen; delete it to measure again. Jobs that lease without a key
(``imbench decouple``) have a device to themselves under ``auto``. A device's total memory is
``torch.cuda.get_device_properties(i).total_memory``, read in a short child process started with
the job's pool as ``CUDA_VISIBLE_DEVICES``: the job itself must not initialise CUDA before its
lease has narrowed ``CUDA_VISIBLE_DEVICES``, and the child sees the device ids exactly as CUDA
will in the job (``nvidia-smi`` numbers devices in PCI order, which CUDA's default order need not
follow). The total, not the free memory, is used so that every job sees the same slot count
whatever is running; other programs using the GPU are not accounted for.

A slot is a *share* of its device: 1/S, where S is the slot count the job computed. A job is
admitted to a device when the shares of the jobs holding it plus its own sum to at most 1, so jobs
that computed different slot counts (different keys, or a measurement that arrived meanwhile)
still never oversubscribe a device: a job that has a device to itself (share 1) waits for it to
empty and keeps it empty. The check and the creation of the lease file happen under one short
exclusive lock of the directory (``admit.lock``). Among the devices with room the least loaded one
is taken (the first in pool order on a tie), so slots are filled across devices first: a grid
smaller than the pool still spreads over the devices. A job waiting for room decides its share
again at every poll, so a peak measured meanwhile applies at once. The log line's ``slot k/S`` is
the lowest slot number free on the device (a label; admission is decided by the shares).

Snakemake's resources are integers (a fractional request such as ``gpu=0.25`` is truncated to 0,
which removes the limit), so when packing, the ``gpu`` resource counts jobs, not devices:
``IMBENCH_GPU_SLOTS=4 snakemake --profile profiles/gpu --resources gpu=<devices × 4>``; with
``auto`` it is the most jobs to run at once, and the leases keep each device within its memory
(jobs beyond what fits wait for a slot). See README.md, "GPUs".
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import glob
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

#: Safety margin on a measured peak, as a fraction of the peak (allocator growth between runs,
#: methods and tasks sharing a memory key).
MEMORY_MARGIN = 0.2
#: Added to a measured peak for the CUDA context and libraries' workspaces outside the allocator.
CONTEXT_BYTES = 1 << 30
#: File in the lock directory with the measured peaks: ``{memory key: bytes}``.
MEASUREMENTS = "peak_memory.json"

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


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


def slots_per_device(value: int | str | None = None) -> int | str:
    """Jobs that may share one device: ``value``, else ``IMBENCH_GPU_SLOTS``, else 1; an integer
    >= 1 or ``"auto"`` (derived from memory, see the module docstring)."""
    raw = value if value is not None else os.environ.get("IMBENCH_GPU_SLOTS", "1")
    if str(raw).strip() == "auto":
        return "auto"
    try:
        slots = int(raw)
    except (TypeError, ValueError):
        slots = 0
    if slots < 1 or str(raw).strip() != str(slots):
        raise ValueError(f"IMBENCH_GPU_SLOTS: expected an integer >= 1 or 'auto', got {raw!r}")
    return slots


def parse_size(raw: str, name: str = "IMBENCH_GPU_JOB_MEMORY") -> int:
    """Bytes of a size such as ``6GiB``, ``6.5GB``, ``6000MiB`` or ``123456`` (decimal units kB..TB,
    binary KiB..TiB, case-insensitive); ``ValueError`` naming ``name`` otherwise."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(raw))
    unit = m and _UNITS.get(m.group(2).upper())
    if not unit or float(m.group(1)) * unit < 1:
        raise ValueError(
            f"{name}: expected a positive size such as 6GiB, 6000MB or a number of bytes, "
            f"got {raw!r}"
        )
    return int(float(m.group(1)) * unit)


def job_memory_override(slots: int | str) -> int | None:
    """``IMBENCH_GPU_JOB_MEMORY`` in bytes (None when unset); it needs ``IMBENCH_GPU_SLOTS=auto``."""
    raw = os.environ.get("IMBENCH_GPU_JOB_MEMORY")
    if raw is None or raw.strip() == "":
        return None
    need = parse_size(raw)
    if slots != "auto":
        raise ValueError(
            f"IMBENCH_GPU_JOB_MEMORY={raw} needs IMBENCH_GPU_SLOTS=auto (got {slots!r}); "
            "unset one of them"
        )
    return need


def default_lock_dir() -> Path:
    return Path(
        os.environ.get("IMBENCH_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "imbench-gpu-locks")
    )


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def read_measurements(lock_dir: str | Path) -> dict[str, int]:
    """The measured peaks in the lock directory (:data:`MEASUREMENTS`; empty when none)."""
    from .io import read_json

    path = Path(lock_dir) / MEASUREMENTS
    if not path.exists():
        return {}
    data = read_json(path)
    if not isinstance(data, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in data.values()
    ):
        raise ValueError(f"{path}: expected an object of memory key -> peak bytes (integers >= 0)")
    return data


def record_peak(lock_dir: str | Path, key: str, peak: int) -> None:
    """Keep ``peak`` (bytes) for ``key`` in the lock directory's measurements if it is the largest
    so far (read-modify-rename under ``admit.lock``)."""
    from .io import write_json

    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    with _dir_lock(lock_dir):
        data = read_measurements(lock_dir)
        if peak > data.get(key, -1):
            data[key] = int(peak)
            write_json(lock_dir / MEASUREMENTS, dict(sorted(data.items())))


def peak_device_memory() -> int | None:
    """This process's peak of memory reserved by PyTorch's CUDA allocator (bytes; None when CUDA
    was never initialised here, or nothing was allocated)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    return int(torch.cuda.max_memory_reserved()) or None


_TOTALS = (
    "import torch; print(' '.join(str(torch.cuda.get_device_properties(i).total_memory) "
    "for i in range(torch.cuda.device_count())))"
)


def device_memory(pool: list[str]) -> dict[str, int]:
    """Total memory (bytes) of each device in ``pool``, read in a child process whose
    ``CUDA_VISIBLE_DEVICES`` is the pool, so that this process does not initialise CUDA."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(pool)}
    out = subprocess.run(
        [sys.executable, "-c", _TOTALS], env=env, capture_output=True, text=True, timeout=300
    )
    totals = out.stdout.split()
    if out.returncode != 0 or len(totals) != len(pool):
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(
            f"IMBENCH_GPU_SLOTS=auto: could not read the memory of GPUs {','.join(pool)} ({tail})"
        )
    return dict(zip(pool, map(int, totals)))


def device_shares(
    pool: list[str], slots: int | str, memory_key: str | None, lock_dir: Path, totals=None
) -> tuple[dict[str, Fraction], str]:
    """The share of each device one job of ``memory_key`` takes (1 / its slot count there), and
    how it was decided (for the log line). ``totals``: a function without arguments giving the
    devices' total memory (default: :func:`device_memory` of ``pool``)."""
    if slots != "auto":
        return {dev: Fraction(1, slots) for dev in pool}, f"{slots} slot(s) per device"
    need = job_memory_override(slots)
    if need is not None:
        how = f"IMBENCH_GPU_JOB_MEMORY {_gib(need)} per job"
    else:
        peak = read_measurements(lock_dir).get(memory_key) if memory_key else None
        if not peak:
            what = f"for {memory_key!r}" if memory_key else "(this job records none)"
            return {dev: Fraction(1) for dev in pool}, (
                f"IMBENCH_GPU_SLOTS=auto: no measured peak memory {what} yet in "
                f"{lock_dir / MEASUREMENTS}, so 1 slot per device (the device to itself)"
            )
        need = int(peak * (1 + MEMORY_MARGIN)) + CONTEXT_BYTES
        how = (
            f"measured peak {_gib(peak)} + {MEMORY_MARGIN:.0%} + {_gib(CONTEXT_BYTES)} = "
            f"{_gib(need)} per job"
        )
    totals = totals() if totals else device_memory(pool)
    counts = {dev: max(1, totals[dev] // need) for dev in pool}
    per_device = ", ".join(f"GPU {d}: {counts[d]} of {_gib(totals[d])}" for d in pool)
    return {dev: Fraction(1, counts[dev]) for dev in pool}, (
        f"IMBENCH_GPU_SLOTS=auto: {how}; slots {per_device}"
    )


@contextlib.contextmanager
def _dir_lock(lock_dir: Path) -> Iterator[None]:
    """The lock directory's short exclusive lock (admission and measurements)."""
    with open(lock_dir / "admit.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _load(lock_dir: Path, dev: str) -> tuple[Fraction, set[int]]:
    """Sum of the shares of the live leases of ``dev`` and their slot numbers; a lease file whose
    holder died (nobody holds its flock) is removed. Call under :func:`_dir_lock`."""
    total, used = Fraction(0), set()
    for path in lock_dir.glob(f"gpu{glob.escape(dev)}.*.lease"):
        try:
            fh = open(path)
        except FileNotFoundError:
            continue
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held: a live job
                share, slot = fh.read().split()
                total += Fraction(share)
                used.add(int(slot))
                continue
            path.unlink(missing_ok=True)  # its job died
    return total, used


def _admit(lock_dir: Path, pool: list[str], shares: dict[str, Fraction]):
    """Lease the least loaded device with room for this job's share: ``(device, open lease file,
    its path, slot number)``, or None when no device has room. The slot number is the lowest one
    no live lease of the device has (a label: what is admitted is decided by the shares)."""
    with _dir_lock(lock_dir):
        loads = {dev: _load(lock_dir, dev) for dev in pool}
        room = [dev for dev in pool if loads[dev][0] + shares[dev] <= 1]
        if not room:
            return None
        dev = min(room, key=lambda d: loads[d][0])
        used = loads[dev][1]
        slot = min(set(range(len(used) + 1)) - used)
        fd, path = tempfile.mkstemp(prefix=f"gpu{dev}.", suffix=".lease", dir=lock_dir)
        fh = os.fdopen(fd, "w")
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.write(f"{shares[dev]} {slot}\n")
        fh.flush()
        return dev, fh, Path(path), slot


@contextlib.contextmanager
def gpu_lease(
    lock_dir: str | Path | None = None,
    timeout: float = 24 * 3600,
    poll: float = 2.0,
    log=print,
    slots: int | str | None = None,
    memory_key: str | None = None,
) -> Iterator[str | None]:
    """Hold one device of the pool (one of its slots when packing) for the duration of the block;
    yields its id (None: no GPU).

    With no device, or one device and one slot, nothing is locked. Otherwise a slot is taken on
    the least loaded device with room (:func:`slots_per_device`, module docstring); if none has
    room (more jobs than ``--resources gpu``, or than fit in memory), it waits up to ``timeout`` s.
    ``memory_key``: what the job's memory depends on (``slots="auto"`` sizes the slots from the
    peaks measured under it); when given and the block ends without error, this process's peak
    device memory is recorded under it in the lock directory.
    """
    pool = device_pool()
    slots = slots_per_device(slots)
    job_memory_override(slots)  # a bad value fails here, before anything is locked
    lock_dir = Path(lock_dir or default_lock_dir())
    if not pool or (len(pool) == 1 and slots == 1):
        yield pool[0] if pool else None
    else:
        lock_dir.mkdir(parents=True, exist_ok=True)
        totals = functools.cache(lambda: device_memory(pool))  # read once, when first needed
        deadline = time.monotonic() + timeout
        while True:
            # decided again while waiting: a peak measured meanwhile applies at once
            shares, how = device_shares(pool, slots, memory_key, lock_dir, totals)
            if (lease := _admit(lock_dir, pool, shares)) is not None:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no free GPU among {pool} ({how}) after {timeout:.0f} s (locks in {lock_dir})"
                )
            time.sleep(poll)
        dev, fh, path, slot = lease
        previous = os.environ.get("CUDA_VISIBLE_DEVICES")
        os.environ["CUDA_VISIBLE_DEVICES"] = dev
        n = shares[dev].denominator  # shares are 1/slots
        where = f"GPU {dev}" if n == 1 else f"GPU {dev} slot {slot + 1}/{n}"
        log(f"leased {where} ({how}; pool {','.join(pool)}, locks in {lock_dir})")
        try:
            yield dev
        finally:
            if previous is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = previous
            path.unlink(missing_ok=True)
            fh.close()  # releases the flock
    peak = peak_device_memory() if memory_key else None
    if peak:
        record_peak(lock_dir, memory_key, peak)
