"""The mask writers, read back by a strict parser (chunk CRCs, the zlib checksum and the
exact amount of image data: decoders accept extra data with only a warning) and by Pillow.

The writers from runs are checked against the pixels themselves; the zlib writers from
ready pixels (the benchmark floor's) round-trip."""

from __future__ import annotations

import io
import struct
import zlib
from functools import partial

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from shared.raster import pngwrite
from shared.raster.deflate import Pieces, deflate_pieces
from shared.raster.pngwrite import (
    encode_bitmask,
    encode_bitmasks,
    encode_gray,
    encode_index_pngs,
    index_pngs,
)
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


def _labels(rng: np.random.Generator, height: int, width: int, stretch: int) -> np.ndarray:
    """Labels 0..4 in runs of about `stretch` pixels (1: every pixel its own run)."""
    small = rng.integers(0, 5, (height, (width + stretch - 1) // stretch)).astype(np.uint32)
    return np.ascontiguousarray(np.repeat(small, stretch, axis=1)[:, :width])


# Batches of one run, of a few, and the default: colours cut into bands of rows.
BATCHES = st.sampled_from([1, 3, 7, pngwrite._BATCH_RUNS])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("per_run", [0, 10**9], ids=["from-runs", "zlib"])
def test_index_mask_bands_join_in_any_order(dtype: type[np.unsignedinteger], per_run: int,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Bands of two rows (zlib: 1 M pixels a band; from the runs: 3 bands), each one
    job, made in any order as two threads would: the joined PNGs are the painted image."""
    width = (1 << 20) // 3 + 5  # zlib bands of 2 rows
    small = np.random.default_rng(2).integers(0, 9, (5, width // 64 + 1)).astype(np.uint32)
    labels = np.ascontiguousarray(np.repeat(small, 64, axis=1)[:, :width])
    assert len(row_bands(labels.shape[0], labels.shape[1], 1 << 20)) == 3
    runs = row_runs(labels)
    lut = (np.arange(runs.colors.size) * 7919 + 3).astype(dtype)
    monkeypatch.setattr(pngwrite, "RUNS_WRITER_PIXELS_PER_RUN", per_run)
    monkeypatch.setattr(pngwrite, "_BATCH_RUNS", 2 * runs.index.size // 5)
    pngs = index_pngs(runs, [lut, lut], labels.shape)
    assert len(pngs.jobs) == 6  # 3 bands of each mask
    painted = lut[np.searchsorted(runs.colors, labels)]
    segments = [job() for job in pngs.jobs[::-1]][::-1]
    for png in pngs.assemble(segments):
        assert np.array_equal(strict_gray(png), painted)


@settings(max_examples=150)
@given(st.integers(1, 300), st.integers(1, 30), st.sampled_from([1, 2, 5, 90]), BATCHES,
       st.sampled_from([0, 10**9]), st.integers(0, 2**32 - 1))
def test_index_masks_by_either_writer_are_the_painted_images(
    width: int, height: int, stretch: int, batch: int, per_run: int, seed: int
) -> None:
    """From the runs (bands of one run, a few, the default) or by zlib: the same pixels."""
    rng = np.random.default_rng(seed)
    labels = _labels(rng, height, width, stretch)
    runs = row_runs(labels)
    luts: list[npt.NDArray[np.unsignedinteger]] = [
        rng.integers(0, 256, runs.colors.size).astype(np.uint8),
        rng.integers(0, 65536, runs.colors.size).astype(np.uint16),
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pngwrite, "_BATCH_RUNS", batch)
        patch.setattr(pngwrite, "RUNS_WRITER_PIXELS_PER_RUN", per_run)
        pngs = encode_index_pngs(runs, luts, labels.shape)
    for png, lut in zip(pngs, luts, strict=True):
        painted = lut[np.searchsorted(runs.colors, labels)]
        assert np.array_equal(strict_gray(png), painted)
        with Image.open(io.BytesIO(png)) as decoded:
            assert np.array_equal(np.asarray(decoded).astype(lut.dtype), painted)


def test_index_masks_take_the_writer_for_their_runs() -> None:
    few = row_runs(np.zeros((200, 300), dtype=np.uint32))  # 200 runs, 300 pixels each
    many = row_runs(np.arange(200 * 300, dtype=np.uint32).reshape(200, 300))
    writers = []
    for runs in (few, many):
        jobs = index_pngs(runs, [np.zeros(runs.colors.size, np.uint8)], (200, 300)).jobs
        assert all(isinstance(job, partial) for job in jobs)
        writers.append({job.func for job in jobs if isinstance(job, partial)})
    assert writers == [{pngwrite._runs_segment}, {pngwrite._zlib_segment}]


@settings(max_examples=150)
@given(st.integers(1, 300), st.integers(1, 30), st.sampled_from([1, 2, 3, 9, 64]), BATCHES,
       st.sampled_from([1, 40, pngwrite._GAP_BYTES]), st.integers(0, 2**32 - 1))
def test_bitmasks_from_runs_are_each_colours_pixels(
    width: int, height: int, stretch: int, batch: int, gap: int, seed: int
) -> None:
    """Runs a pixel or two apart share bytes; rows wider than a match of 258 bytes; any
    subset of colours, in any order; units cut at every empty row or never."""
    rng = np.random.default_rng(seed)
    labels = _labels(rng, height, width, stretch)
    runs = row_runs(labels)
    chosen = rng.permutation(runs.colors.size)[: rng.integers(1, runs.colors.size + 1)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pngwrite, "_BATCH_RUNS", batch)
        patch.setattr(pngwrite, "_GAP_BYTES", gap)
        pngs = encode_bitmasks(runs, chosen.astype(np.intp), width, height)
    for i, png in zip(chosen.tolist(), pngs, strict=True):
        expected = labels == runs.colors[i]
        assert np.array_equal(strict_bitmask(png), expected)
        with Image.open(io.BytesIO(png)) as image:
            assert np.array_equal(np.asarray(image.convert("L")) == 255, expected)


def test_a_colour_of_many_runs_is_written_in_bands() -> None:
    labels = np.zeros((40, 2100), dtype=np.uint32)
    labels[:, ::2] = 1  # 1050 runs of colour 1 a row: bands of whole rows
    labels[5:30, 700:] = 2
    runs = row_runs(labels)
    batches: list[int] = []  # pieces a vectorised pass

    def counted(pieces: Pieces) -> list[bytes]:
        batches.append(pieces.pos.size)
        return deflate_pieces(pieces)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pngwrite, "_BATCH_RUNS", 2000)
        patch.setattr(pngwrite, "deflate_pieces", counted)
        pngs = encode_bitmasks(runs, np.arange(runs.colors.size), 2100, 40)
    for i, png in enumerate(pngs):
        assert np.array_equal(strict_bitmask(png), labels == runs.colors[i])
    # 42,000 runs of colour 1 in bands of two rows: every pass stays near 2000 runs.
    assert len(batches) >= 20 and max(batches) <= 3 * (2000 + 1050)


def test_empty_rows_inside_a_colour_cost_no_work() -> None:
    """A colour in the first and last rows of a tall mask: its empty rows between are
    cached zero segments, not matches written one by one (that was 32 thousand codes
    per colour at 8192x8192)."""
    labels = np.zeros((5000, 64), dtype=np.uint32)
    labels[0, :3] = labels[-1, 5:9] = 1
    runs = row_runs(labels)
    calls: list[int] = []
    real = deflate_pieces

    def counted(pieces: Pieces) -> list[bytes]:
        calls.append(int(pieces.sizes.sum()))
        return real(pieces)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pngwrite, "deflate_pieces", counted)
        (png,) = encode_bitmasks(runs, np.array([1]), 64, 5000)
    assert np.array_equal(strict_bitmask(png), labels == 1)
    assert calls == [2 * 9]  # two one-row units of 9 bytes each


def test_bitmasks_of_no_colours() -> None:
    runs = row_runs(np.zeros((3, 4), dtype=np.uint32))
    assert encode_bitmasks(runs, np.zeros(0, dtype=np.intp), 4, 3) == []


def test_index_mask_refuses_other_depths() -> None:
    with pytest.raises(ValueError, match="8 or 16 bits"):
        encode_gray(np.zeros((4, 6), np.uint32))

