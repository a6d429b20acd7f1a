"""Fashion-MNIST loading and preprocessing (no torchvision).

The data comes from Debian's `dataset-fashion-mnist` package (IDX files,
gzip-compressed).  Preprocessing contract shared with the Rust side and the
`examples/models/<model>.json` files:

    x = pixel / 255                      (float32, [0, 1])
    x = zero-pad `pad` pixels each side  (raw value 0, BEFORE normalisation)
    x = (x - MEAN) / STD
"""
import gzip
import os
import struct

import numpy as np
import torch

DATA_DIR = os.environ.get("FMNIST_DIR", "/usr/share/datasets/fashion-mnist")

# Mean / std of the 60k training images (28x28, pixel/255), rounded to 4
# decimals; `python fmnist.py` recomputes them.
MEAN = 0.2860
STD = 0.3530


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    assert zero == 0 and dtype == 0x08, f"{path}: not an unsigned-byte IDX file"
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    assert arr.size == int(np.prod(dims)), f"{path}: size mismatch"
    return arr.reshape(dims)


def load(split):
    """Return (images uint8 [N,28,28], labels int64 [N]) for 'train' or 't10k'."""
    images = _read_idx(os.path.join(DATA_DIR, f"{split}-images-idx3-ubyte.gz"))
    labels = _read_idx(os.path.join(DATA_DIR, f"{split}-labels-idx1-ubyte.gz"))
    assert images.shape[0] == labels.shape[0]
    return images, labels.astype(np.int64)


def to_unit(images_u8, pad):
    """uint8 [N,28,28] -> float32 tensor [N,1,28+2p,28+2p] in [0,1], zero padded."""
    x = torch.from_numpy(images_u8.astype(np.float32) / 255.0).unsqueeze(1)
    if pad:
        x = torch.nn.functional.pad(x, (pad, pad, pad, pad), value=0.0)
    return x


def normalise(x):
    return (x - MEAN) / STD


def preprocess(images_u8, pad):
    """The full inference-time preprocessing, float32."""
    return normalise(to_unit(images_u8, pad))


def augment(x, crop_pad, flip, gen):
    """Random crop (zero padding of `crop_pad`) + random horizontal flip.

    x: float32 [B,1,H,W] in [0,1] (before normalisation). gen: torch.Generator.
    """
    b, c, h, w = x.shape
    if crop_pad:
        xp = torch.nn.functional.pad(x, (crop_pad,) * 4, value=0.0)
        dy = torch.randint(0, 2 * crop_pad + 1, (b,), generator=gen)
        dx = torch.randint(0, 2 * crop_pad + 1, (b,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None, :])  # [B,H]
        cols = (dx[:, None] + torch.arange(w)[None, :])  # [B,W]
        bi = torch.arange(b)[:, None, None]
        x = xp[bi, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)
    if flip:
        f = torch.rand(b, generator=gen) < 0.5
        x = torch.where(f[:, None, None, None], x.flip(3), x)
    return x


if __name__ == "__main__":
    imgs, labels = load("train")
    x = imgs.astype(np.float64) / 255.0
    print(f"train: {imgs.shape}, mean {x.mean():.4f}, std {x.std():.4f}")
    timgs, tlabels = load("t10k")
    print(f"test: {timgs.shape}, label counts {np.bincount(tlabels)}")
