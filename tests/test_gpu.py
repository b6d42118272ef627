"""GPU leases: distinct devices for concurrent jobs, release on exit and on SIGKILL (no GPU needed:
the leases are plain file locks over the ids in CUDA_VISIBLE_DEVICES)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from imbench.gpu import device_pool, gpu_lease

HOLD = """
import os, sys, time
from imbench.gpu import gpu_lease
with gpu_lease(sys.argv[1], log=lambda m: None) as dev:
    print(dev, os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(lock_dir, seconds, pool="0,1"):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": pool}
    p = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock_dir), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = p.stdout.readline().split()
    return p, line


def test_pool_from_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert device_pool() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert device_pool() == []


def test_single_device_is_a_no_op(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # what SLURM gives a one-GPU job
    with gpu_lease(tmp_path, log=lambda m: None) as dev:
        assert dev == "3"
    assert not list(tmp_path.iterdir())


def test_concurrent_jobs_get_distinct_devices(tmp_path):
    a, la = _holder(tmp_path, 5)
    b, lb = _holder(tmp_path, 5)
    try:
        assert {la[0], lb[0]} == {"0", "1"}
        assert la[0] == la[1] and lb[0] == lb[1]  # CUDA_VISIBLE_DEVICES narrowed to the lease
    finally:
        a.kill(), b.kill(), a.wait(), b.wait()


def test_lease_is_released_when_the_job_is_killed(tmp_path, monkeypatch):
    a, la = _holder(tmp_path, 60)
    b, lb = _holder(tmp_path, 60)
    b.send_signal(signal.SIGKILL)
    b.wait()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    try:
        with gpu_lease(tmp_path, timeout=5, poll=0.1, log=lambda m: None) as dev:
            assert dev == lb[0]  # the killed job's device is free again
    finally:
        a.kill(), a.wait()


def test_waits_then_times_out_when_all_busy(tmp_path, monkeypatch):
    a, _ = _holder(tmp_path, 60, pool="0,1")
    b, _ = _holder(tmp_path, 60, pool="0,1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=r"no free GPU among \['0', '1'\]"):
            with gpu_lease(tmp_path, timeout=0.5, poll=0.1, log=lambda m: None):
                pass
        assert time.monotonic() - t0 >= 0.5
    finally:
        a.kill(), b.kill(), a.wait(), b.wait()


RECORD = """
import os, sys, time
from imbench.gpu import gpu_lease
with gpu_lease(sys.argv[1], poll=0.05, log=lambda m: None) as dev:
    start = time.time()
    time.sleep(0.6)
    print(dev, start, time.time(), flush=True)
"""


def test_six_cells_on_three_gpus_never_share_a_device(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1,2"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RECORD, str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(6)
    ]
    spans = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        dev, start, end = out.split()
        spans.append((dev, float(start), float(end)))
    assert {d for d, _, _ in spans} <= {"0", "1", "2"}
    for i, (d1, s1, e1) in enumerate(spans):
        for d2, s2, e2 in spans[i + 1 :]:
            if d1 == d2:
                assert e1 <= s2 or e2 <= s1, f"GPU {d1} held twice at once"


# ----------------------------------------------------------------------------- packing


def _spans(tmp_path, n, pool, slots, hold=0.8):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": pool, "IMBENCH_GPU_SLOTS": str(slots)}
    script = RECORD.replace("time.sleep(0.6)", f"time.sleep({hold})")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(n)
    ]
    spans = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        dev, start, end = out.split()
        spans.append((dev, float(start), float(end)))
    return spans


def _most_at_once(spans, device=None):
    """Largest number of spans (on ``device``, or any) that hold at the same moment."""
    chosen = [(s, e) for d, s, e in spans if device is None or d == device]
    return max(sum(s <= t < e for s, e in chosen) for t, _ in chosen)


def test_four_cells_share_one_device_with_four_slots(tmp_path):
    """One simulated device, 4 slots: 4 jobs hold it at once, a fifth waits for a slot."""
    spans = _spans(tmp_path, 5, "0", 4, hold=1.5)
    assert {d for d, _, _ in spans} == {"0"}
    assert _most_at_once(spans) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"gpu0.slot{k}.lock" for k in range(4)]


def test_slots_spread_over_devices_before_sharing(tmp_path, monkeypatch):
    """Two devices, two slots each: the first two leases take different devices; never more than
    two jobs on one device."""
    monkeypatch.setenv("IMBENCH_GPU_SLOTS", "2")
    holders = [_holder(tmp_path / "first", 30) for _ in range(3)]
    try:
        devices = [line[0] for _, line in holders]
        assert set(devices[:2]) == {"0", "1"} and devices[2] in {"0", "1"}
    finally:
        for p, _ in holders:
            p.kill(), p.wait()
    spans = _spans(tmp_path, 8, "0,1", 2)
    assert {d for d, _, _ in spans} == {"0", "1"}
    assert max(_most_at_once(spans, d) for d in ("0", "1")) <= 2
    assert _most_at_once(spans) >= 3  # more than one job per device at once


@pytest.mark.parametrize("value", ["0", "two", "1.5", "-1"])
def test_bad_slot_count_is_one_clear_error(value, monkeypatch, tmp_path):
    monkeypatch.setenv("IMBENCH_GPU_SLOTS", value)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(
        ValueError, match=f"IMBENCH_GPU_SLOTS: expected an integer >= 1, got '{value}'"
    ):
        with gpu_lease(tmp_path, log=lambda m: None):
            pass
