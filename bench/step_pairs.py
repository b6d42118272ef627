"""Per-step overhead check: imbench's training step against the bare loop's, interleaved step by step.

The loop-overhead benchmark (loop_overhead.py) compares whole epochs, alternated epoch by epoch;
this finer check alternates single steps of the two (the order flips every step), on the same
batches, so even drift within an epoch hits both alike: imbench's step (``images_to_input`` into the reused batch, the ``ce``
loss module from ``build_loss``, AdamW, the on-device loss sum of ``train_cell``) against the bare
loop's (gather, element-wise conversion with in-place normalisation, ``F.cross_entropy``, AdamW).
test_resnet at 32 px, batch 64, 1 thread, deterministic algorithms; 400 steps each, the first 20
dropped; prints the median step times and bare / imbench (≥ 1: imbench's step is no slower).

    python bench/step_pairs.py
"""

import time

import numpy as np
import torch
import torch.nn.functional as F

from imbench.methods import build_loss
from imbench.models import create_model
from imbench.train import IMAGENET_MEAN, IMAGENET_STD, InputBuffer, Settings, images_to_input

N, SIZE, BATCH, STEPS, WARMUP = 2048, 32, 64, 400, 20


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    images = torch.randint(0, 256, (N, SIZE, SIZE, 3), dtype=torch.uint8)
    labels = torch.randint(0, 7, (N,))
    settings = Settings(image_size=SIZE)
    models, optimizers = [], []
    for _ in range(2):  # the same initial weights for both loops
        torch.manual_seed(0)
        models.append(create_model("test_resnet", 7).train())
        optimizers.append(torch.optim.AdamW(models[-1].parameters(), lr=1e-3))
    loss_fn = build_loss(
        "ce", np.bincount(labels.numpy(), minlength=7).tolist(), kind="multiclass", n_samples=N
    )
    buffer = InputBuffer()
    gens = [torch.Generator().manual_seed(1) for _ in range(2)]
    mean, std = (
        torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
        torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
    )
    total = torch.zeros(())

    def imbench_step(idx):
        nonlocal total
        x = images_to_input(images, idx, settings, gens[0], buffer(len(idx), 3, SIZE, SIZE))
        loss = loss_fn(models[0](x).float(), labels[idx])
        optimizers[0].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[0].step()
        total += loss.detach() * len(idx)

    def bare_step(idx):
        x = images[idx].permute(0, 3, 1, 2).float().div_(255)
        flips = torch.rand(len(idx), 2, generator=gens[1]) < 0.5
        x = torch.where(flips[:, 0].view(-1, 1, 1, 1), x.flip(3), x)
        x = torch.where(flips[:, 1].view(-1, 1, 1, 1), x.flip(2), x)
        x.sub_(mean).div_(std)
        loss = F.cross_entropy(models[1](x), labels[idx])
        optimizers[1].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[1].step()

    times = {"imbench": [], "bare": []}
    for k in range(STEPS):
        idx = torch.randperm(N)[:BATCH]
        order = ("imbench", "bare") if k % 2 else ("bare", "imbench")
        for name in order:
            t0 = time.perf_counter()
            (imbench_step if name == "imbench" else bare_step)(idx)
            times[name].append(time.perf_counter() - t0)
    imb, bare = (np.median(times[n][WARMUP:]) for n in ("imbench", "bare"))
    print(
        f"imbench step median {imb * 1e3:.2f} ms, bare {bare * 1e3:.2f} ms, "
        f"bare / imbench {bare / imb:.3f}"
    )


if __name__ == "__main__":
    main()
