"""Image classification data: Fashion-MNIST (idx files) and scikit-learn's bundled 8×8 digits.

Both loaders return a :class:`~polytask.tasks.data.TensorData` whose inputs are float images
``[N, 1, H, W]`` scaled to ``[0, 1]`` and whose single target (``task``, default ``"label"``) is
the class id as a float (the ``multiclass`` task convention)::

    train = load_fashion_mnist("train")          # 60,000 × 1 × 28 × 28, 10 classes
    test = load_fashion_mnist("test")            # the official 10,000-image test set
    digits = load_digits_images()                # 1,797 × 1 × 8 × 8, 10 classes (unit tests)

Fashion-MNIST is read from the four gzip-compressed idx files that Debian's
``dataset-fashion-mnist`` package installs under ``/usr/share/datasets/fashion-mnist`` (or from
any folder given as ``root``). The idx format (LeCun et al., MNIST) is a big-endian header — two
zero bytes, a type code (``0x08`` = unsigned byte), the number of dimensions ``d`` — then ``d``
big-endian ``uint32`` sizes and the row-major data. Nothing is ever downloaded.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from polytask._core import PolytaskError, require
from polytask.tasks.data.tensors import TensorData

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "load_digits_images",
    "load_fashion_mnist",
    "read_idx",
]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """The unsigned-byte array stored in one idx file (gzip-compressed or not).

    >>> import gzip, struct, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "t.gz")
    >>> with gzip.open(p, "wb") as f:
    ...     _ = f.write(struct.pack(">BBBBII", 0, 0, 8, 2, 2, 3) + bytes(range(6)))
    >>> read_idx(p).tolist()
    [[0, 1, 2], [3, 4, 5]]
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise PolytaskError(f"{path}: cannot read idx file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise PolytaskError(f"{path}: not an idx file (bad magic number)")
    if raw[2] != 0x08:
        raise PolytaskError(f"{path}: idx type code {raw[2]:#04x} unsupported (need 0x08, ubyte)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise PolytaskError(f"{path}: truncated idx header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise PolytaskError(
            f"{path}: idx header announces shape {list(shape)} ({size} bytes), "
            f"the file holds {len(raw) - header} bytes of data"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_fashion_mnist(
    split: str = "train",
    root: str | Path | None = None,
    task: str = "label",
    limit: int | None = None,
) -> TensorData:
    """One Fashion-MNIST split as ``[N, 1, 28, 28]`` images in ``[0, 1]`` and class ids ``0..9``.

    ``limit`` keeps the first ``limit`` rows (small slices for tests). A missing folder or file
    raises a one-line error naming the path and the Debian package that provides it.
    """
    if split not in _FILES:
        raise PolytaskError(f"fashion-mnist: unknown split {split!r}; valid: train, test")
    folder = Path(root) if root is not None else Path(FASHION_MNIST_DIR)
    paths = [folder / name for name in _FILES[split]]
    for p in paths:
        if not p.is_file():
            raise PolytaskError(
                f"fashion-mnist: {p} not found; install the Debian package dataset-fashion-mnist "
                f"(apt-get install dataset-fashion-mnist) or point root to a folder holding "
                f"{', '.join(_FILES[split])}"
            )
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise PolytaskError(
            f"fashion-mnist: {paths[0]} has shape {list(images.shape)} and {paths[1]} has "
            f"{list(labels.shape)}; expected [N, H, W] images and [N] labels"
        )
    if int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise PolytaskError(f"fashion-mnist: {paths[1]} holds label {int(labels.max())} > 9")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return _tensor_data(images, labels, 255.0, task, f"fashion-mnist/{split}")


def load_digits_images(task: str = "label") -> TensorData:
    """scikit-learn's bundled digits: ``[1797, 1, 8, 8]`` images in ``[0, 1]`` (pixel / 16)."""
    datasets = require("sklearn.datasets", extra="affinity")
    bunch = datasets.load_digits()
    return _tensor_data(bunch.images, bunch.target, 16.0, task, "digits")


def _tensor_data(
    images: np.ndarray, labels: np.ndarray, scale: float, task: str, name: str
) -> TensorData:
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / scale).unsqueeze(1)
    y = torch.from_numpy(np.asarray(labels, dtype=np.float32))
    return TensorData(x.contiguous(), {task: y}, name)
