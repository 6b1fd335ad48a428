"""Preprocessing, rotation augmentation and the torch Dataset."""
import numpy as np
import pytest
import torch

from common.errors import UsageError
from data_io import LensImageDataset, Preprocess, random_augment, rotate_batch
from data_io.preprocess import disc_mask


def test_crop_pad_normalise_shapes_and_values():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 100, (150, 150)).astype(np.float32)
    out = Preprocess()(img)
    assert out.shape == (1, 129, 129) and out.dtype == torch.float32
    inner = out[0, :128, :128]
    assert abs(float(inner.mean())) < 1e-4 and float(inner.std()) == pytest.approx(1.0, abs=1e-3)
    assert torch.all(out[0, 128, :] == 0) and torch.all(out[0, :, 128] == 0)
    raw = Preprocess(normalise=False)(img)[0, :128, :128].numpy()
    np.testing.assert_array_equal(raw, img[11:139, 11:139])  # central crop, no resize
    small = Preprocess(65, crop_fraction=1.0).batch(rng.uniform(size=(3, 64, 64)))
    assert small.shape == (3, 1, 65, 65)
    down = Preprocess(65).batch(rng.uniform(size=(2, 150, 150)))  # 128 -> 64 antialiased
    assert down.shape == (2, 1, 65, 65)
    with pytest.raises(UsageError):
        Preprocess(128)


def test_batch_equals_single_image_path():
    imgs = np.random.default_rng(1).uniform(size=(4, 150, 150)).astype(np.float32)
    p = Preprocess()
    torch.testing.assert_close(p.batch(imgs), torch.stack([p(i) for i in imgs]))


def test_rotation_matches_rot90_inside_disc_and_conserves_flux():
    x = torch.zeros(1, 1, 65, 65)
    x[0, 0, 20:30, 30:50] = 1.0
    mask = disc_mask(65)
    r = rotate_batch(x, torch.tensor([90.0]))[0, 0]
    ref = torch.rot90(x[0, 0], 1) * mask
    # upsample/downsample smooths edges; interior pixels and total flux are preserved
    assert float((r - ref).abs().sum() / ref.sum()) < 0.2
    assert float(r.sum()) == pytest.approx(float(ref.sum()), rel=0.02)
    zero = rotate_batch(x, torch.tensor([0.0]))[0, 0]
    assert float((zero - x[0, 0] * mask).abs().max()) < 0.5
    assert torch.all(rotate_batch(torch.ones(1, 1, 65, 65), torch.tensor([33.0]))[0, 0][~mask] == 0)


def test_random_augment_is_seeded_and_batched():
    x = torch.randn(6, 1, 33, 33)
    a = random_augment(x, torch.Generator().manual_seed(3), rotate=True, flip=True)
    b = random_augment(x, torch.Generator().manual_seed(3), rotate=True, flip=True)
    c = random_augment(x, torch.Generator().manual_seed(4), rotate=True, flip=True)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    flipped = random_augment(x, torch.Generator().manual_seed(0), rotate=False, flip=True)
    for i in range(6):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], torch.flip(x[i], (-1,)))


def test_dataset_and_loader_over_read_only_arrays():
    images = np.random.default_rng(2).uniform(size=(10, 64, 64)).astype(np.float32)
    images.setflags(write=False)
    labels = np.arange(10) % 3
    ds = LensImageDataset(images, labels, Preprocess(65, crop_fraction=1.0))
    x, y = ds[4]
    assert x.shape == (1, 65, 65) and y.dtype == torch.int64 and int(y) == 1
    xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False)))
    assert xb.shape == (4, 1, 65, 65) and yb.tolist() == [0, 1, 2, 0]
    torch.testing.assert_close(xb[1], ds[1][0])


@pytest.mark.parametrize("size,channels,dtype", [(65, 1, torch.float32), (33, 2, torch.float64)])
def test_compiled_cpu_rotation_equals_the_torch_path(size, channels, dtype):
    gen = torch.Generator().manual_seed(size)
    x = torch.randn(5, channels, size, size, generator=gen, dtype=dtype)
    angles = torch.tensor([0.0, 17.0, 90.0, 213.5, 359.0])
    ref = rotate_batch(x, angles, compiled=False)
    fast = rotate_batch(x, angles)
    assert fast.dtype == dtype and fast.shape == x.shape
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-4)
    a = random_augment(x, torch.Generator().manual_seed(1), flip=True)
    b = random_augment(x, torch.Generator().manual_seed(1), flip=True, compiled=False)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
