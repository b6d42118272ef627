"""Per-step overhead check: imbench's training step against the bare loop's, interleaved step by step.

The loop-overhead benchmark (loop_overhead.py) compares whole epochs, run back to back; on a VM
whose speed drifts by ±10 % within minutes its per-pair ratios spread from about 0.75 to 1.25.
This check alternates single steps of the two (the order flips every step), on the same batches,
so drift hits both alike: imbench's step (``images_to_input`` into the reused batch, the ``ce``
loss module from ``build_loss``, AdamW, the on-device loss sum of ``train_cell``) against the bare
loop's (gather, element-wise conversion with in-place normalisation, ``F.cross_entropy``, AdamW).
test_resnet at 32 px, batch 64, 1 thread, deterministic algorithms; 400 steps each, the first 20
dropped; prints the median step times and bare / imbench (≥ 1: imbench's step is no slower).

    python bench/step_pairs.py
"""
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from imbench.train import images_to_input, InputBuffer, Settings
from imbench.models import create_model
from imbench.methods import build_loss
torch.set_num_threads(1); torch.use_deterministic_algorithms(True)
imgs = torch.randint(0, 256, (2048, 32, 32, 3), dtype=torch.uint8); labels = torch.randint(0, 7, (2048,))
s = Settings(image_size=32)
torch.manual_seed(0); m1 = create_model("test_resnet", 7); torch.manual_seed(0); m2 = create_model("test_resnet", 7)
o1 = torch.optim.AdamW(m1.parameters(), lr=1e-3); o2 = torch.optim.AdamW(m2.parameters(), lr=1e-3)
loss_fn = build_loss("ce", np.bincount(labels.numpy(), minlength=7).tolist(), kind="multiclass", n_samples=2048)
buf = InputBuffer(); g1 = torch.Generator().manual_seed(1); g2 = torch.Generator().manual_seed(1)
total = torch.zeros(())
def imb(idx):
    global total
    x = images_to_input(imgs, idx, s, g1, buf(len(idx), 3, 32, 32)); y = labels[idx]
    loss = loss_fn(m1(x).float(), y); o1.zero_grad(set_to_none=True); loss.backward(); o1.step()
    total += loss.detach() * len(idx)
def bare(idx):
    u8 = imgs[idx]; x = u8.permute(0, 3, 1, 2).float().div_(255)
    f = torch.rand(len(idx), 2, generator=g2) < 0.5
    x = torch.where(f[:, 0].view(-1, 1, 1, 1), x.flip(3), x); x = torch.where(f[:, 1].view(-1, 1, 1, 1), x.flip(2), x)
    x.sub_(torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)).div_(torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    loss = F.cross_entropy(m2(x), labels[idx]); o2.zero_grad(set_to_none=True); loss.backward(); o2.step()
m1.train(); m2.train()
ti, tb = [], []
for k in range(400):
    idx = torch.randperm(2048)[:64]
    for fn, acc in ((imb, ti), (bare, tb)) if k % 2 else ((bare, tb), (imb, ti)):
        t = time.perf_counter(); fn(idx); acc.append(time.perf_counter() - t)
ti, tb = np.array(ti[20:]), np.array(tb[20:])
print(f"imbench step median {np.median(ti)*1e3:.2f} ms, bare {np.median(tb)*1e3:.2f} ms, ratio of rates {np.median(tb)/np.median(ti):.3f}")
