"""Byte-level data: memory map, deterministic split, seeded windows with shifted targets."""

import numpy as np
import pytest
import torch

from qtransformers.exceptions import InvalidArgumentError
from qtransformers.train.data import ByteDataset, decode, encode


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_bytes(bytes(range(256)) * 8)
    return path


def test_split_is_deterministic_and_covers_file(text_file):
    data = ByteDataset(text_file, val_fraction=0.25)
    assert isinstance(data.data, np.memmap)
    assert data.split_size("train") + data.split_size("val") == len(data) == 2048
    assert data.split_size("val") == 512
    again = ByteDataset(text_file, val_fraction=0.25)
    assert np.array_equal(np.asarray(data.splits["val"]), np.asarray(again.splits["val"]))


def test_windows_are_seeded_and_targets_shifted(text_file):
    data = ByteDataset(text_file)
    x1, y1 = data.batch("train", 5, 17, torch.Generator().manual_seed(3))
    x2, y2 = data.batch("train", 5, 17, torch.Generator().manual_seed(3))
    x3, _ = data.batch("train", 5, 17, torch.Generator().manual_seed(4))
    assert x1.shape == y1.shape == (5, 17) and x1.dtype == torch.int64
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    # the file is 0,1,...,255 repeated: the target is always the next byte
    assert torch.equal(y1, (x1 + 1) % 256)


def test_val_windows_come_from_the_val_split(text_file):
    data = ByteDataset(text_file, val_fraction=0.5)
    x, _ = data.batch("val", 64, 8, torch.Generator().manual_seed(0))
    start = len(data) - data.split_size("val")
    val = np.asarray(data.splits["val"])
    for row in x.tolist():
        hits = [i for i in range(len(val) - 8) if list(val[i : i + 8]) == row]
        assert hits, f"window {row} not found in the validation split starting at byte {start}"


def test_bad_input_raises(tmp_path, text_file):
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        ByteDataset(tmp_path / "missing.txt")
    with pytest.raises(InvalidArgumentError, match="val_fraction"):
        ByteDataset(text_file, val_fraction=1.5)
    data = ByteDataset(text_file, val_fraction=0.01)
    with pytest.raises(InvalidArgumentError, match="does not fit"):
        data.batch("val", 1, 100, torch.Generator())
    with pytest.raises(InvalidArgumentError, match="split"):
        data.batch("test", 1, 4, torch.Generator())


def test_encode_decode_roundtrip_and_invalid_utf8():
    text = "ΨQRH — bytes ✓"
    assert decode(encode(text).tolist()) == text
    assert decode([0xE2, 0x82]) == "\ufffd"  # truncated multi-byte sequence


def test_shakespeare_memmap(shakespeare_path):
    data = ByteDataset(shakespeare_path)
    assert len(data) == shakespeare_path.stat().st_size
    x, _ = data.batch("train", 2, 64, torch.Generator().manual_seed(0))
    assert int(x.max()) < 256
