"""The 1-bit mask writer, read back by a strict parser: chunk CRCs, the zlib checksum and
the exact amount of image data (decoders accept extra data with only a warning)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from shared.raster.pngwrite import encode_bitmask, encode_gray, encode_index_mask
from shared.raster.runs import row_bands, row_runs


def strict_png(png: bytes) -> tuple[int, int, int, npt.NDArray[np.uint8]]:
    """Width, height, bit depth and raw scanlines of a one-IDAT greyscale PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, []
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, data = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", png[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + data) == crc, kind
        chunks.append((kind, data))
        at += 12 + length
    assert [k for k, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (colour, interlace) == (0, 0)
    raw = zlib.decompress(chunks[1][1])  # checks the zlib header and adler32
    row_bytes = (width * depth + 7) // 8 + 1
    assert len(raw) == height * row_bytes, "image data must fill exactly the frame"
    return width, height, depth, np.frombuffer(raw, np.uint8).reshape(height, row_bytes)


def strict_bitmask(png: bytes) -> npt.NDArray[np.bool_]:
    width, _, depth, rows = strict_png(png)
    assert depth == 1
    assert (rows[:, 0] == 0).all()  # filter type None
    return np.unpackbits(rows[:, 1:], axis=1)[:, :width].astype(bool)


def strict_gray(png: bytes) -> npt.NDArray[np.unsignedinteger]:
    """An 8- or 16-bit greyscale PNG whose rows use filter None or SUB."""
    width, height, depth, rows = strict_png(png)
    assert depth in (8, 16)
    step = depth // 8
    data = rows[:, 1:].copy()
    assert set(np.unique(rows[:, 0]).tolist()) <= {0, 1}
    sub = rows[:, 0] == 1
    for lane in range(step):  # SUB adds the byte one pixel to the left, modulo 256
        data[sub, lane::step] = np.cumsum(data[sub, lane::step], axis=1, dtype=np.uint8)
    dtype = np.dtype(">u2") if step == 2 else np.dtype(np.uint8)
    return data.view(dtype).reshape(height, width).astype(dtype.newbyteorder("="))


def _scanlines(box: npt.NDArray[np.bool_], x0: int, width: int) -> npt.NDArray[np.uint8]:
    placed = np.zeros((box.shape[0], width), dtype=bool)
    placed[:, x0 : x0 + box.shape[1]] = box
    return np.hstack([np.zeros((box.shape[0], 1), np.uint8), np.packbits(placed, axis=1)])


@given(st.integers(1, 70), st.integers(1, 40), st.data())
def test_bitmask_png_is_exactly_the_box_in_a_zero_frame(width: int, height: int,
                                                         data: st.DataObject) -> None:
    y0 = data.draw(st.integers(0, height - 1))
    x0 = data.draw(st.integers(0, width - 1))
    h = data.draw(st.integers(1, height - y0))
    w = data.draw(st.integers(1, width - x0))
    seed = data.draw(st.integers(0, 2**32 - 1))
    box = np.random.default_rng(seed).random((h, w)) < 0.5
    png = encode_bitmask(_scanlines(box, x0, width), y0, width, height)
    expected = np.zeros((height, width), dtype=bool)
    expected[y0 : y0 + h, x0 : x0 + w] = box
    assert np.array_equal(strict_bitmask(png), expected)
    with Image.open(io.BytesIO(png)) as image:
        assert np.array_equal(np.asarray(image.convert("L")) == 255, expected)


def test_bitmask_refuses_rows_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="scanlines"):
        encode_bitmask(np.zeros((2, 4), np.uint8), 0, 32, 4)  # a 32-px row is 5 bytes
    with pytest.raises(ValueError, match="scanlines"):
        encode_bitmask(np.zeros((3, 5), np.uint8), 2, 32, 4)  # rows 2..4 of 4


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_index_masks_round_trip(dtype: type[np.unsignedinteger]) -> None:
    image = np.random.default_rng(1).integers(0, 300 if dtype is np.uint16 else 256,
                                              (37, 51)).astype(dtype)
    png = encode_gray(image)
    assert np.array_equal(strict_gray(png), image)
    with Image.open(io.BytesIO(png)) as decoded:
        assert np.array_equal(np.asarray(decoded).astype(dtype), image)


@given(st.integers(1, 40), st.integers(1, 30), st.sampled_from([np.uint8, np.uint16]),
       st.data())
def test_index_mask_from_runs_is_the_painted_images_png(width: int, height: int,
                                                        dtype: type[np.unsignedinteger],
                                                        data: st.DataObject) -> None:
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 5, (height, (width + 3) // 4)).astype(np.uint32)
    labels = np.ascontiguousarray(np.repeat(small, 4, axis=1)[:, :width])
    runs = row_runs(labels)
    lut = rng.integers(0, np.iinfo(dtype).max + 1, runs.colors.size).astype(dtype)
    painted = lut[np.searchsorted(runs.colors, labels)]
    png = encode_index_mask(runs, lut, labels.shape)
    assert png == encode_gray(painted)
    assert np.array_equal(strict_gray(png), painted)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_index_mask_of_a_frame_wider_than_a_band(dtype: type[np.unsignedinteger]) -> None:
    width = (1 << 22) // 3 + 5  # bands of 2 rows
    small = np.random.default_rng(2).integers(0, 9, (5, width // 64 + 1)).astype(np.uint32)
    labels = np.ascontiguousarray(np.repeat(small, 64, axis=1)[:, :width])
    assert len(row_bands(*labels.shape)) == 3
    runs = row_runs(labels)
    lut = (np.arange(runs.colors.size) * 7919 + 3).astype(dtype)
    painted = lut[np.searchsorted(runs.colors, labels)]
    png = encode_index_mask(runs, lut, labels.shape)
    assert png == encode_gray(painted)
    assert np.array_equal(strict_gray(png), painted)


def test_index_mask_refuses_other_depths() -> None:
    with pytest.raises(ValueError, match="8 or 16 bits"):
        encode_gray(np.zeros((4, 6), np.uint32))
