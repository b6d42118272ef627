"""Training steps by memory layout and deterministic mode, interleaved (prints its figures).

The measurement behind ``memory_format: auto`` and ``deterministic: auto`` on the CPU
(``imbench.train.AUTO_MEMORY_FORMAT``, ``AUTO_DETERMINISTIC``). One timm model per variant (same
seed, each with its own AdamW) takes training steps on the same random float batch (batch 32,
1 thread); the variants take turns step by step, in an order that rotates every round, so each
round gives one paired ratio per variant: the plain variant's step time over the variant's (above
1 = faster than plain). Printed: each variant's median step time and the median of its paired
ratios. Variants:

- ``plain``: NCHW model and input, default flags (the PyTorch tutorials' loop);
- ``mixed_in_cl``: channels-last input batches, channels-first model (imbench's CPU path before
  ``memory_format`` existed);
- ``both_cl``: model and input channels-last (``memory_format: channels_last``);
- ``plain_det``, ``both_cl_det``: the same with ``torch.use_deterministic_algorithms(True)``.

    python bench/layout_steps.py resnet18 64 40
    python bench/layout_steps.py resnet50 224 5 plain,both_cl,mixed_in_cl
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
import torch.nn.functional as F

#: name -> (channels-last input, channels-last model, deterministic algorithms)
VARIANTS = {
    "plain": (False, False, False),
    "mixed_in_cl": (True, False, False),
    "both_cl": (True, True, False),
    "plain_det": (False, False, True),
    "both_cl_det": (True, True, True),
}


def main(argv=None) -> dict:
    from imbench.models import create_model

    argv = sys.argv[1:] if argv is None else argv
    model_name, px, rounds = argv[0], int(argv[1]), int(argv[2])
    names = argv[3].split(",") if len(argv) > 3 else list(VARIANTS)
    if "plain" not in names:
        raise SystemExit("the variants must include 'plain' (the reference)")
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(32, 3, px, px, generator=g)
    y0 = torch.randint(0, 7, (32,), generator=g)
    state = {}
    for n in names:
        torch.manual_seed(0)
        m = create_model(model_name, 7, pretrained=False)
        if VARIANTS[n][1]:
            m = m.to(memory_format=torch.channels_last)
        state[n] = (m, torch.optim.AdamW(m.parameters(), lr=1e-3))

    def step(n: str) -> float:
        cl, _, det = VARIANTS[n]
        m, opt = state[n]
        previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(det)
        try:
            x = x0.contiguous(memory_format=torch.channels_last) if cl else x0.clone()
            t = time.perf_counter()
            opt.zero_grad()
            F.cross_entropy(m(x), y0).backward()
            opt.step()
            return time.perf_counter() - t
        finally:
            torch.use_deterministic_algorithms(previous)

    for n in names:  # warm-up
        step(n)
    times = {n: [] for n in names}
    for r in range(rounds):
        shift = r % len(names)
        for n in names[shift:] + names[:shift]:
            times[n].append(step(n))
    out = {}
    for n in names:
        ratio = statistics.median(a / b for a, b in zip(times["plain"], times[n]))
        out[n] = {"median_step_s": statistics.median(times[n]), "speed_vs_plain": ratio}
        print(
            f"{n} median step s {out[n]['median_step_s']:.4f} "
            f"speed vs plain (median paired) {ratio:.3f}",
            flush=True,
        )
    return out


if __name__ == "__main__":
    main()
