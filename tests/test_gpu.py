"""GPU leases: distinct devices for concurrent jobs, release on exit and on SIGKILL (no GPU needed:
the leases are plain file locks over the ids in CUDA_VISIBLE_DEVICES)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from imbench.gpu import device_pool, gpu_lease, read_measurements, record_peak

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
    assert [p.name for p in tmp_path.iterdir()] == ["admit.lock"]  # every lease file removed


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


@pytest.mark.parametrize("value", ["0", "two", "1.5", "-1", "AUTO", ""])
def test_bad_slot_count_is_one_clear_error(value, monkeypatch, tmp_path):
    monkeypatch.setenv("IMBENCH_GPU_SLOTS", value)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(
        ValueError, match=f"IMBENCH_GPU_SLOTS: expected an integer >= 1 or 'auto', got '{value}'"
    ):
        with gpu_lease(tmp_path, log=lambda m: None):
            pass


# ----------------------------------------------------------------------------- slots from memory
#
# Simulated devices: the pool and the devices' total memory are monkeypatched; leases taken in one
# process through separate open files exclude each other exactly as leases of separate processes.

GB = 10**9
KEY = "train test_resnet {}"


def _simulate(monkeypatch, totals: dict[str, int], slots="auto"):
    """A pool of simulated devices with ``totals`` bytes each; IMBENCH_GPU_SLOTS=``slots``."""
    import imbench.gpu as gpu

    monkeypatch.setattr(gpu, "device_pool", lambda: list(totals))
    monkeypatch.setattr(gpu, "device_memory", lambda pool: {d: totals[d] for d in pool})
    monkeypatch.setenv("IMBENCH_GPU_SLOTS", str(slots))
    monkeypatch.delenv("IMBENCH_GPU_JOB_MEMORY", raising=False)


def _lease_all(lock_dir, n, key=KEY, logs=None):
    """Take up to ``n`` leases at once (no waiting); returns the devices leased and the open stack."""
    stack = contextlib.ExitStack()
    devices = []
    for _ in range(n):
        try:
            devices.append(
                stack.enter_context(
                    gpu_lease(
                        lock_dir,
                        timeout=0,
                        poll=0.01,
                        log=(logs.append if logs is not None else lambda m: None),
                        memory_key=key,
                    )
                )
            )
        except TimeoutError:
            break
    return devices, stack


def test_auto_slots_follow_from_measured_peak_and_device_memory(monkeypatch, tmp_path):
    """141 GB device, 20 GB measured peak: need 20 GB × 1.2 + 1 GiB = 25.07 GB → 5 slots."""
    _simulate(monkeypatch, {"0": 141 * GB})
    record_peak(tmp_path, KEY, 20 * GB)
    logs = []
    devices, stack = _lease_all(tmp_path, 7, logs=logs)
    with stack:
        assert devices == ["0"] * 5  # the sixth finds no room
        assert "slot 1/5" in logs[0] and "slot 5/5" in logs[4]
        assert "measured peak 18.6 GiB" in logs[0] and "GPU 0: 5 of 131.3 GiB" in logs[0]
        assert len(list(tmp_path.glob("gpu0.*.lease"))) == 5
    assert not list(tmp_path.glob("*.lease"))  # released


def test_auto_slots_per_device_spread_first(monkeypatch, tmp_path):
    """Devices of different sizes get their own slot counts (80 GB: 3, 40 GB: 1); the first leases
    spread over the devices."""
    _simulate(monkeypatch, {"0": 80 * GB, "1": 40 * GB})
    record_peak(tmp_path, KEY, 20 * GB)
    devices, stack = _lease_all(tmp_path, 6)
    with stack:
        assert devices == ["0", "1", "0", "0"]


def test_auto_without_measurement_is_one_slot_per_device(monkeypatch, tmp_path):
    _simulate(monkeypatch, {"0": 141 * GB, "1": 141 * GB})
    import imbench.gpu as gpu

    def no_query(pool):
        raise AssertionError("the device memory is not needed without a measurement")

    monkeypatch.setattr(gpu, "device_memory", no_query)
    record_peak(tmp_path, "train other_model {}", 1 * GB)  # another key's peak is not used
    logs = []
    devices, stack = _lease_all(tmp_path, 3, logs=logs)
    with stack:
        assert devices == ["0", "1"]
        assert "no measured peak memory for 'train test_resnet {}' yet" in logs[0]
        assert "1 slot per device" in logs[0]
    devices, stack = _lease_all(tmp_path, 3, key=None, logs=logs)  # a job that records nothing
    with stack:
        assert devices == ["0", "1"]


def test_a_job_with_the_device_to_itself_and_packed_jobs_exclude_each_other(monkeypatch, tmp_path):
    """Jobs that computed different slot counts never oversubscribe a device: an unmeasured job
    waits for a device with packed jobs to empty, and packed jobs wait while it holds the device."""
    _simulate(monkeypatch, {"0": 141 * GB})
    record_peak(tmp_path, KEY, 20 * GB)
    with gpu_lease(tmp_path, log=lambda m: None, memory_key=KEY):
        with pytest.raises(TimeoutError, match="1 slot per device"):
            with gpu_lease(tmp_path, timeout=0, log=lambda m: None, memory_key="train big {}"):
                pass
    with gpu_lease(tmp_path, log=lambda m: None, memory_key="train big {}"):
        devices, stack = _lease_all(tmp_path, 2)
        with stack:
            assert devices == []


def test_a_waiting_job_uses_a_peak_measured_meanwhile(monkeypatch, tmp_path):
    """A job queued for a whole device (no measurement of its key) is packed as soon as a run of
    its key records a peak, without waiting for the device to empty."""
    import threading

    _simulate(monkeypatch, {"0": 141 * GB})
    record_peak(tmp_path, "train small {}", 2 * GB)
    got = []
    with gpu_lease(tmp_path, log=lambda m: None, memory_key="train small {}"):
        waiter = threading.Thread(
            target=lambda: got.append(
                _lease_and_release(tmp_path, timeout=20, poll=0.02, memory_key=KEY)
            )
        )
        waiter.start()
        time.sleep(0.3)
        assert not got  # still waiting for the whole device
        record_peak(tmp_path, KEY, 20 * GB)
        waiter.join(20)
        assert got and "slot 2/5" in got[0]


def _lease_and_release(lock_dir, **kwargs):
    logs = []
    with gpu_lease(lock_dir, log=logs.append, **kwargs):
        pass
    return logs[0]


def test_job_memory_override_replaces_the_measurement(monkeypatch, tmp_path):
    _simulate(monkeypatch, {"0": 141 * GB})
    record_peak(tmp_path, KEY, 20 * GB)  # would give 5 slots
    monkeypatch.setenv("IMBENCH_GPU_JOB_MEMORY", "40GiB")  # taken as is: 141 GB // 42.9 GB = 3
    logs = []
    devices, stack = _lease_all(tmp_path, 5, logs=logs)
    with stack:
        assert devices == ["0"] * 3
        assert "IMBENCH_GPU_JOB_MEMORY 40.0 GiB per job" in logs[0]
    monkeypatch.setenv("IMBENCH_GPU_JOB_MEMORY", "6000MB")  # also without any measurement
    devices, stack = _lease_all(tmp_path, 30, key="train unmeasured {}")
    with stack:
        assert len(devices) == 23  # 141 GB // 6 GB


def test_a_job_larger_than_the_device_gets_it_whole(monkeypatch, tmp_path):
    _simulate(monkeypatch, {"0": 16 * GB})
    monkeypatch.setenv("IMBENCH_GPU_JOB_MEMORY", "40GB")
    devices, stack = _lease_all(tmp_path, 2)
    with stack:
        assert devices == ["0"]


def test_finished_jobs_record_their_peak(monkeypatch, tmp_path):
    """The largest peak per key is kept; a job that fails records nothing; a job without a key
    records nothing."""
    import imbench.gpu as gpu

    _simulate(monkeypatch, {"0": 141 * GB, "1": 141 * GB})
    peak = {"bytes": 7 * GB}
    monkeypatch.setattr(gpu, "peak_device_memory", lambda: peak["bytes"])
    with gpu_lease(tmp_path, log=lambda m: None, memory_key=KEY):
        pass
    assert read_measurements(tmp_path) == {KEY: 7 * GB}
    peak["bytes"] = 5 * GB
    with gpu_lease(tmp_path, log=lambda m: None, memory_key=KEY):
        pass
    peak["bytes"] = 9 * GB
    with pytest.raises(RuntimeError, match="out of memory"):
        with gpu_lease(tmp_path, log=lambda m: None, memory_key=KEY):
            raise RuntimeError("out of memory")
    with gpu_lease(tmp_path, log=lambda m: None):
        pass
    assert json.loads((tmp_path / "peak_memory.json").read_text()) == {KEY: 7 * GB}
    # the next job derives its slots from it: (7 GB × 1.2 + 1 GiB) → 141 // 9.47 = 14
    logs = []
    with gpu_lease(tmp_path, log=logs.append, memory_key=KEY):
        assert "GPU 0: 14 of 131.3 GiB" in logs[0]


def test_training_records_peak_device_memory_null_on_cpu(monkeypatch, tmp_path, tiny_synthetic):
    """``imbench train`` writes timings.peak_device_memory_bytes (null on the CPU) and leases with
    the cell's memory key, under which a process that used CUDA records its peak."""
    import imbench.gpu as gpu
    from imbench.cli import main
    from imbench.train import Settings, memory_key

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no device: the lease holds nothing
    monkeypatch.setenv("IMBENCH_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setattr(gpu, "peak_device_memory", lambda: 3 * GB)  # as if CUDA had been used
    settings = {"epochs": 1, "batch_size": 32, "image_size": 16, "threads": 1, "device": "auto"}
    argv = ["train", "--task", "synthetic", "--cache-dir", str(tiny_synthetic["cache"])]
    argv += ["--split", str(tiny_synthetic["split"]), "--model", "test_resnet", "--method", "ce"]
    argv += ["--seed", "0", "--settings", json.dumps(settings), "--out-dir", str(tmp_path / "c")]
    assert main(argv) == 0
    run = json.loads((tmp_path / "c" / "run.json").read_text())
    assert run["hardware"]["device"] == "cpu"
    assert "peak_device_memory_bytes" in run["timings"]
    assert run["timings"]["peak_device_memory_bytes"] is None
    key = memory_key("test_resnet", Settings.from_dict(settings))
    assert read_measurements(tmp_path / "locks") == {key: 3 * GB}


def test_memory_key_has_what_sets_memory_only():
    from imbench.train import Settings, memory_key

    base = memory_key("resnet18", Settings(image_size=64, batch_size=32))
    assert base.startswith("train resnet18 ")
    assert memory_key("resnet18", Settings(image_size=64, batch_size=32, lr=0.5, epochs=3)) == base
    for other in (
        memory_key("resnet50", Settings(image_size=64, batch_size=32)),
        memory_key("resnet18", Settings(image_size=224, batch_size=32)),
        memory_key("resnet18", Settings(image_size=64, batch_size=64)),
        memory_key("resnet18", Settings(image_size=64, batch_size=32, precision="fp32")),
        memory_key("resnet18", Settings(image_size=64, batch_size=32, compile=True)),
    ):
        assert other != base


@pytest.mark.parametrize("value", ["6", "6 GiB", "0", "-2GB", "6XB", "lots", "6e9"])
def test_bad_job_memory_is_one_clear_error(value, monkeypatch, tmp_path):
    _simulate(monkeypatch, {"0": 141 * GB})
    monkeypatch.setenv("IMBENCH_GPU_JOB_MEMORY", value)
    if value in ("6", "6 GiB"):  # valid sizes (6 bytes, 6 GiB)
        with gpu_lease(tmp_path, log=lambda m: None):
            return
    with pytest.raises(
        ValueError,
        match=r"IMBENCH_GPU_JOB_MEMORY: expected a positive size such as 6GiB, 6000MB or a "
        rf"number of bytes, got '{re.escape(value)}'",
    ):
        with gpu_lease(tmp_path, log=lambda m: None):
            pass


def test_job_memory_without_auto_is_one_clear_error(monkeypatch, tmp_path):
    _simulate(monkeypatch, {"0": 141 * GB, "1": 141 * GB}, slots=2)
    monkeypatch.setenv("IMBENCH_GPU_JOB_MEMORY", "6GiB")
    with pytest.raises(
        ValueError, match=r"IMBENCH_GPU_JOB_MEMORY=6GiB needs IMBENCH_GPU_SLOTS=auto"
    ):
        with gpu_lease(tmp_path, log=lambda m: None):
            pass


def test_bad_measurements_file_is_one_clear_error(monkeypatch, tmp_path):
    _simulate(monkeypatch, {"0": 141 * GB})
    (tmp_path / "peak_memory.json").write_text('{"train test_resnet {}": "20GB"}')
    with pytest.raises(ValueError, match=r"peak_memory.json: expected an object of memory key"):
        with gpu_lease(tmp_path, log=lambda m: None, memory_key=KEY):
            pass


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="checks the machine without CUDA"
)
def test_device_memory_query_without_cuda_is_one_clear_error():
    """The real query (a child process with torch): on a machine without CUDA it names the GPUs."""
    from imbench.gpu import device_memory

    with pytest.raises(RuntimeError, match=r"IMBENCH_GPU_SLOTS=auto: could not read the memory"):
        device_memory(["0"])
