"""Input path under CPU contention: images/s of the CPU batch conversion (``images_to_input``) on a
quiet machine and with one competing busy process, with 2 and 1 torch threads.

``images_to_input`` copies each selected uint8 image (flipped at random) into its slot of a
reused float batch, then normalises the batch in place. Handed to PyTorch's intra-op thread pool,
every operator costs a synchronisation of the pool, and when another process competes for the
cores those hand-offs wait for a descheduled thread. The current code runs the whole conversion
on the calling thread (``imbench.train.one_thread``). "before" is the same function with its
operators left to the pool (the previous form), measured in the same run.

Per repeat: a quiet phase (waits for a quiet machine like the other benchmarks), then a phase with
one child process spinning on one core (``while True: pass``), killed afterwards. In each phase,
one epoch of batches (64 images at 224 px, a random permutation of ``--n-images`` in-memory uint8
images, ``augment: flip``) of every variant, interleaved: after and before at 2 threads, after at
1 thread. The figures are medians over repeats; the contended phase's load record shows the
child (about 1 foreign core).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402

NAME = "input_contention"


def epoch_rate(images, settings, n_threads: int, pool_copies: bool, seed: int) -> float:
    """images/s of one epoch of ``images_to_input`` batches with ``n_threads`` torch threads;
    ``pool_copies``: the previous form (every operator through the thread pool)."""
    import torch

    from imbench import train

    torch.set_num_threads(n_threads)
    buffer = train.InputBuffer()
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    size, batch = images.shape[1], 64
    saved = train.one_thread
    if pool_copies:
        train.one_thread = contextlib.nullcontext
    try:
        t0 = time.perf_counter()
        n = 0
        for start in range(0, len(order) - batch + 1, batch):
            idx = order[start : start + batch]
            train.images_to_input(images, idx, settings, generator, buffer(batch, 3, size, size))
            n += batch
        return n / (time.perf_counter() - t0)
    finally:
        train.one_thread = saved


def phase(images, settings, seed: int) -> dict:
    return {
        "after_2t": round(epoch_rate(images, settings, 2, False, seed), 1),
        "before_2t": round(epoch_rate(images, settings, 2, True, seed), 1),
        "after_1t": round(epoch_rate(images, settings, 1, False, seed), 1),
    }


def main(argv=None) -> Path:
    p = benchlib.parser(__doc__.split("\n\n")[0])
    p.add_argument("--n-images", type=int, default=2048, help="in-memory 224 px images")
    args = p.parse_args(argv)
    return benchlib.run_restoring(_main, args, argv)


def _main(args, argv) -> Path:
    import torch

    from imbench.settings import Settings

    repeats = args.repeats or (1 if args.quick else 3)
    n, size = (128, 32) if args.quick else (args.n_images, 224)
    images = torch.randint(
        0, 256, (n, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    settings = Settings(augment="flip", image_size=size)
    samples = []
    for i in range(repeats):
        quiet = benchlib.wait_quiet(
            args.max_foreign, 0 if args.quick else args.max_wait, 0.2 if args.quick else 1.0
        )
        with benchlib.CpuMeter() as m_quiet:
            q = phase(images, settings, seed=i)
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.5)
            with benchlib.CpuMeter() as m_busy:
                b = phase(images, settings, seed=i)
            competitor_ran = spinner.poll() is None  # still spinning when the phase ended
        finally:
            spinner.kill()
            spinner.wait()
        sample = {
            **{f"quiet_{k}": v for k, v in q.items()},
            **{f"busy_{k}": v for k, v in b.items()},
            "load": {**m_quiet.record(), "waited_s": quiet["waited_s"], "attempt": 1},
            "load_busy_phase": m_busy.record(),
            "competitor_ran_throughout": competitor_ran,
        }
        sample["load"]["disturbed"] = m_quiet.foreign_cores > args.max_foreign
        print(f"{NAME} repeat {i + 1}/{repeats}: {q} | one busy process: {b}", flush=True)
        samples.append(sample)

    def med(key):
        return round(benchlib.median([s[key] for s in samples]), 1)

    tag = f"224 px, batch 64, augment flip, {n} in-memory images" if not args.quick else "quick"
    figures = [
        {"name": f"images_to_input, 2 threads, quiet ({tag})", "value": med("quiet_after_2t")},
        {
            "name": "before (through the thread pool), 2 threads, quiet",
            "value": med("quiet_before_2t"),
        },
        {"name": "images_to_input, 1 thread, quiet", "value": med("quiet_after_1t")},
        {
            "name": "images_to_input, 2 threads, one competing busy process",
            "value": med("busy_after_2t"),
            "target": 3000,
            "op": ">=",
        },
        {
            "name": "before (through the thread pool), 2 threads, one competing busy process",
            "value": med("busy_before_2t"),
        },
        {
            "name": "images_to_input, 1 thread, one competing busy process",
            "value": med("busy_after_1t"),
        },
    ]
    for f in figures:
        f["unit"] = "images/s"
    figures.append(
        {
            "name": "after / before, 2 threads, one competing busy process",
            "value": round(med("busy_after_2t") / med("busy_before_2t"), 2),
            "unit": "×",
        }
    )
    details = {"n_images": n, "image_size": size, "batch_size": 64, "repeats": repeats}
    details["samples"] = samples
    return benchlib.write_result(
        NAME, "input_contention.py", argv, args, figures, details, benchlib.load_summary(samples)
    )


if __name__ == "__main__":
    main()
