"""The host data path (uint8 cache → float model input) against the plain element-wise formulation.

The reference below is written with whole-batch operations (convert, ``torch.where`` flips,
broadcast normalisation); imbench's CPU path flips uint8 images one by one and normalises in place
on a row view. Both must give the same numbers bit for bit and consume the same random draws, so
that results and resumed runs do not depend on which path produced a batch.
"""

import pytest
import torch

from imbench.train import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    InputBuffer,
    Settings,
    images_to_input,
    to_device,
    to_input,
)


def reference(batch_u8, settings, generator=None):
    x = batch_u8.permute(0, 3, 1, 2).float().div_(255)
    if generator is not None and settings.augment == "flip":
        n = x.shape[0]
        flips = torch.rand(n, 2, generator=generator)
        x = torch.where((flips[:, 0] < 0.5).view(n, 1, 1, 1), x.flip(3), x)
        x = torch.where((flips[:, 1] < 0.5).view(n, 1, 1, 1), x.flip(2), x)
    if settings.normalize == "imagenet":
        x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
            1, 3, 1, 1
        )
    return x


def images(n=16, h=12, w=12, seed=0):
    return torch.randint(
        0, 256, (n, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def gen(seed=7):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("memory_format", ["channels_last", "contiguous"])
@pytest.mark.parametrize("augment", ["flip", "none"])
@pytest.mark.parametrize("normalize", ["imagenet", "none"])
@pytest.mark.parametrize("with_generator", [True, False])
def test_to_input_matches_reference_bit_for_bit(augment, normalize, with_generator, memory_format):
    s = Settings(augment=augment, normalize=normalize, memory_format=memory_format)
    u8 = images(h=10, w=14)  # not square: height and width flips must not be swapped
    g1, g2 = (gen(), gen()) if with_generator else (None, None)
    got = to_input(u8, s, torch.device("cpu"), g1)
    want = reference(u8, s, g2)
    assert got.shape == want.shape == (16, 3, 10, 14)
    assert got.dtype == torch.float32
    assert torch.equal(got, want)
    fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    assert got.is_contiguous(memory_format=fmt)
    if with_generator:  # the same random draws were consumed
        assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))


def test_flips_are_per_sample_and_follow_the_draws():
    s = Settings(augment="flip", normalize="none")
    u8 = images(n=64)
    draws = torch.rand(64, 2, generator=gen()) < 0.5
    x = to_input(u8, s, torch.device("cpu"), gen())
    base = u8.permute(0, 3, 1, 2).float() / 255
    for i in range(64):
        expected = base[i]
        if draws[i, 0]:
            expected = expected.flip(2)  # width
        if draws[i, 1]:
            expected = expected.flip(1)  # height
        assert torch.equal(x[i], expected), i
    assert 0 < int(draws[:, 0].sum()) < 64 and 0 < int(draws[:, 1].sum()) < 64


def test_input_is_not_modified():
    u8 = images()
    before = u8.clone()
    to_input(u8, Settings(augment="flip"), torch.device("cpu"), gen())
    images_to_input(
        u8, torch.tensor([3, 1, 3]), Settings(augment="flip"), gen(), InputBuffer()(3, 3, 12, 12)
    )
    assert torch.equal(u8, before)


def test_images_to_input_equals_gather_then_to_input():
    s = Settings(augment="flip", normalize="imagenet")
    u8 = images(n=40)
    idx = torch.tensor([5, 0, 39, 5, 17, 2, 2, 11])  # repeats, as oversampling gives
    buf = InputBuffer()
    got = images_to_input(u8, idx, s, gen(), buf(len(idx), 3, 12, 12))
    want = reference(u8[idx], s, gen())
    assert torch.equal(got, want)


def test_buffer_is_reused_and_regrown():
    buf = InputBuffer()
    a = buf(8, 3, 12, 12)
    b = buf(5, 3, 12, 12)  # a smaller last batch: a view of the same memory
    assert b.data_ptr() == a.data_ptr() and b.shape == (5, 3, 12, 12)
    c = buf(9, 3, 12, 12)
    assert c.shape == (9, 3, 12, 12)
    d = buf(4, 3, 16, 16)  # another image size: a new tensor
    assert d.shape == (4, 3, 16, 16)
    s = Settings(augment="flip")
    u8 = images(n=9)
    for _ in range(2):  # stale contents of the reused buffer never leak into a batch
        got = images_to_input(u8, torch.arange(9), s, gen(), buf(9, 3, 12, 12))
        assert torch.equal(got, reference(u8, s, gen()))


def test_the_layout_of_out_does_not_change_the_values():
    u8 = images(n=6)
    s = Settings(augment="flip", normalize="imagenet")
    cl = images_to_input(
        u8, torch.arange(6), s, gen(), InputBuffer(torch.channels_last)(6, 3, 12, 12)
    )
    nchw = images_to_input(u8, torch.arange(6), s, gen(), torch.empty(6, 3, 12, 12))
    assert nchw.is_contiguous() and cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(cl, nchw)


def test_to_device_on_the_cpu_is_a_plain_gather():
    imgs = images(n=10)
    idx = torch.tensor([7, 2, 2, 9])
    cpu = torch.device("cpu")
    assert torch.equal(to_device(imgs, idx, cpu), imgs[idx])
    assert torch.equal(to_device(imgs[3:6], None, cpu), imgs[3:6])
    labels = torch.arange(10) * 3
    assert to_device(labels, idx, cpu).tolist() == [21, 6, 6, 27]


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize("normalize", ["imagenet", "none"])
def test_cuda_input_matches_the_cpu_reference(normalize):
    # pinned gather + asynchronous copy + conversion on the device: the same values and the same
    # random draws as the CPU reference (float32 arithmetic on both sides)
    settings = Settings(image_size=12, normalize=normalize)
    imgs = images(n=40)
    idx = torch.randperm(40, generator=torch.Generator().manual_seed(3))[:17]
    cuda = torch.device("cuda")
    staged = to_device(imgs, idx, cuda)
    assert staged.device.type == "cuda" and torch.equal(staged.cpu(), imgs[idx])
    got = to_input(staged, settings, cuda, torch.Generator().manual_seed(5))
    want = reference(imgs[idx], settings, torch.Generator().manual_seed(5))
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got.cpu(), want, rtol=1e-6, atol=1e-6)


@needs_cuda
def test_cuda_staging_buffers_are_not_overwritten_in_flight():
    # many back-to-back pinned gathers without any synchronisation: every batch must arrive intact
    imgs = images(n=64, h=64, w=64)
    cuda = torch.device("cuda")
    batches = [
        torch.randint(0, 64, (32,), generator=torch.Generator().manual_seed(k)) for k in range(50)
    ]
    on_device = [to_device(imgs, idx, cuda) for idx in batches]
    for idx, x in zip(batches, on_device):
        assert torch.equal(x.cpu(), imgs[idx])


def test_one_thread_runs_the_block_on_one_thread_and_restores_the_count():
    from imbench.train import one_thread

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), one_thread():
            raise RuntimeError("the count comes back on errors too")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
