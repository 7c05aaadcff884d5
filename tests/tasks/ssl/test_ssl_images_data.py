"""Image data (idx reader, Fashion-MNIST, digits) and the convolutional trunk."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
import torch

from polytask._core import PolytaskError
from polytask.models.conv import conv_trunk
from polytask.tasks.data.images import (
    FASHION_MNIST_DIR,
    load_digits_images,
    load_fashion_mnist,
    read_idx,
)


def _write_idx(path: Path, header: bytes, data: bytes) -> None:
    with gzip.open(path, "wb") as f:
        f.write(header + data)


def _fake_fashion(root: Path, n: int = 3) -> None:
    images = bytes(range(n * 4))  # n images of 2×2
    _write_idx(
        root / "t10k-images-idx3-ubyte.gz", struct.pack(">BBBBIII", 0, 0, 8, 3, n, 2, 2), images
    )
    _write_idx(
        root / "t10k-labels-idx1-ubyte.gz",
        struct.pack(">BBBBI", 0, 0, 8, 1, n),
        bytes([9, 0, 4][:n]),
    )


def test_read_idx_values_and_shape(tmp_path: Path) -> None:
    p = tmp_path / "x.gz"
    _write_idx(p, struct.pack(">BBBBII", 0, 0, 8, 2, 2, 3), bytes([0, 1, 2, 253, 254, 255]))
    assert read_idx(p).tolist() == [[0, 1, 2], [253, 254, 255]]


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        (b"\x01\x00\x08\x01", b"", "bad magic"),
        (struct.pack(">BBBBI", 0, 0, 0x0D, 1, 2), b"\x00" * 8, "type code"),
        (struct.pack(">BBBBII", 0, 0, 8, 2, 2, 3), b"\x00" * 5, "holds 5 bytes"),
    ],
)
def test_read_idx_rejects_malformed(
    tmp_path: Path, header: bytes, data: bytes, message: str
) -> None:
    p = tmp_path / "bad.gz"
    _write_idx(p, header, data)
    with pytest.raises(PolytaskError, match=message):
        read_idx(p)


def test_fashion_reader_scales_and_shapes(tmp_path: Path) -> None:
    _fake_fashion(tmp_path)
    data = load_fashion_mnist("test", root=tmp_path, task="cls")
    assert data.inputs.shape == (3, 1, 2, 2)
    assert data.inputs[0, 0].flatten().tolist() == pytest.approx([0.0, 1 / 255, 2 / 255, 3 / 255])
    assert data.targets["cls"].tolist() == [9.0, 0.0, 4.0]
    assert len(load_fashion_mnist("test", root=tmp_path, limit=2)) == 2


def test_fashion_missing_names_path_and_package(tmp_path: Path) -> None:
    with pytest.raises(PolytaskError) as err:
        load_fashion_mnist("train", root=tmp_path / "nowhere")
    msg = str(err.value)
    assert "nowhere/train-images-idx3-ubyte.gz" in msg and "dataset-fashion-mnist" in msg
    assert "\n" not in msg
    with pytest.raises(PolytaskError, match="unknown split"):
        load_fashion_mnist("val", root=tmp_path)


@pytest.mark.skipif(
    not Path(FASHION_MNIST_DIR).is_dir(), reason="dataset-fashion-mnist not installed"
)
def test_real_fashion_test_split_is_balanced() -> None:
    data = load_fashion_mnist("test", limit=1000)
    assert data.inputs.shape == (1000, 1, 28, 28)
    assert float(data.inputs.min()) >= 0.0 and float(data.inputs.max()) == 1.0
    assert torch.equal(data.targets["label"][:5], torch.tensor([9.0, 2.0, 1.0, 1.0, 6.0]))


@pytest.mark.needs("sklearn")  # the digits ship with scikit-learn
def test_digits_images() -> None:
    data = load_digits_images()
    assert data.inputs.shape == (1797, 1, 8, 8)
    assert float(data.inputs.max()) == 1.0 and float(data.inputs.min()) == 0.0
    assert sorted(set(data.targets["label"].tolist())) == [float(c) for c in range(10)]


def test_conv_trunk_shapes_and_errors() -> None:
    trunk = conv_trunk(1, channels=(4, 8, 8), out_dim=16, pool=2)
    assert trunk.out_dim == 16
    assert trunk(torch.zeros(3, 1, 28, 28)).shape == (3, 16)
    assert trunk(torch.zeros(3, 1, 8, 8)).shape == (3, 16)  # 8 → 4 → 2 → 1, then pooled to 2×2
    with pytest.raises(PolytaskError, match=r"expects images \[B, 1, H, W\]"):
        trunk(torch.zeros(3, 64))
    with pytest.raises(PolytaskError, match="dropout"):
        conv_trunk(dropout=1.0)
    with pytest.raises(PolytaskError, match=">= 1"):
        conv_trunk(channels=())
