"""PNG writers for the mask outputs, all through zlib (PERFORMANCE.md).

Index masks are written band by band, never held whole.  A per-colour mask is a full-size
1-bit PNG, but its rows outside the colour's box are all zero.  Deflate segments for runs
of zero rows are compressed once per row width (for power-of-two run lengths) and
stitched; only the box's rows are compressed per colour.  The zlib checksum is extended
arithmetically over the zero runs.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from .runs import row_bands

_MOD_ADLER = 65521
_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return b"".join((struct.pack(">I", len(data)), kind, data, struct.pack(">I", crc)))


def _raw_segment(
    data: memoryview | bytes, level: int = 6, strategy: int = zlib.Z_DEFAULT_STRATEGY
) -> bytes:
    """Raw deflate blocks ending on a byte boundary (sync flush), never marked final."""
    comp = zlib.compressobj(level, zlib.DEFLATED, -15, 8, strategy)
    return comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)


_FINAL_EMPTY_BLOCK = b"\x03\x00"  # a final, empty fixed-Huffman block
_IEND = _chunk(b"IEND", b"")


@functools.lru_cache(maxsize=64)
def _zero_rows_segment(row_bytes: int, rows: int) -> bytes:
    return _raw_segment(b"\x00" * (row_bytes * rows), 9)


@functools.lru_cache(maxsize=4096)  # a handful of distinct row counts per colour
def _zero_run(row_bytes: int, rows: int) -> bytes:
    """Deflate segment for `rows` zero rows, stitched from cached power-of-two pieces."""
    out = []
    bit = 1
    while rows:
        if rows & bit:
            out.append(_zero_rows_segment(row_bytes, bit))
            rows -= bit
        bit <<= 1
    return b"".join(out)


def _adler_zeros(adler: int, count: int) -> int:
    """adler32 after `count` more zero bytes: A is unchanged, B grows by A per byte."""
    a, b = adler & 0xFFFF, adler >> 16
    b = (b + (count % _MOD_ADLER) * a) % _MOD_ADLER
    return (b << 16) | a


def encode_bitmask(rows: npt.NDArray[np.uint8] | bytes, y0: int, width: int, height: int) -> bytes:
    """A full-size 1-bit greyscale PNG (0/255 when decoded) whose rows from y0 on are
    `rows` (PNG scanlines: a 0 filter byte, then the pixels packed MSB first), all
    other rows zero."""
    # A flat byte view: lengths in bytes whatever the array's shape.
    data = (memoryview(rows) if isinstance(rows, bytes) else rows.data).cast("B")
    row_bytes = (width + 7) // 8 + 1
    h, extra = divmod(data.nbytes, row_bytes)
    if extra or y0 + h > height:
        raise ValueError(f"{data.nbytes} bytes are not whole scanlines of a {width}x{height} mask")
    adler = _adler_zeros(
        zlib.adler32(data, _adler_zeros(1, row_bytes * y0)), row_bytes * (height - y0 - h)
    )
    stream = b"".join(
        (
            b"\x78\x01",
            _zero_run(row_bytes, y0),
            # Run-length matches only: faster than level 1 and smaller on 1-bit rows.
            _raw_segment(data, 1, zlib.Z_RLE),
            _zero_run(row_bytes, height - y0 - h),
            _FINAL_EMPTY_BLOCK,
            struct.pack(">I", adler),
        )
    )
    return b"".join((_header(width, height), _chunk(b"IDAT", stream), _IEND))


@functools.lru_cache(maxsize=16)
def _header(width: int, height: int) -> bytes:
    return _SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))


def encode_gray(image: npt.NDArray[np.unsignedinteger[Any]]) -> bytes:
    """8- or 16-bit greyscale PNG of a ready image."""
    height, width = image.shape
    bands = (image[r0:r1] for r0, r1 in row_bands(height, width))
    return encode_gray_bands(bands, width, height, image.dtype)


def encode_gray_bands(
    bands: Iterable[npt.NDArray[np.unsignedinteger[Any]]],
    width: int,
    height: int,
    dtype: np.dtype[Any],
) -> bytes:
    """8- or 16-bit greyscale PNG from consecutive bands of whole rows, top to bottom.

    The frame is never held whole: each band goes through one reused scanline buffer, so
    a full-size index mask costs no full-size allocation (at 64 MP the page faults behind
    those, and the kernel's huge-page compaction, made run times vary by a third).
    Settings measured on 1920x1080 and 8192x8192 masks: deflate level 1 with run-length
    matches only; 8-bit rows unfiltered (3x faster than adaptive filtering, same size),
    16-bit rows SUB-filtered (equal neighbours become zero bytes: unfiltered, the file
    grows 15x).
    """
    depth = np.dtype(dtype).itemsize
    if depth not in (1, 2):
        raise ValueError(f"greyscale PNGs hold 8 or 16 bits, not {8 * depth}")
    row_bytes = 1 + width * depth
    scanlines: npt.NDArray[np.uint8] | None = None
    compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    parts = []
    rows = 0
    for band in bands:
        n = band.shape[0]
        if scanlines is None or scanlines.shape[0] < n:
            scanlines = np.empty((n, row_bytes), dtype=np.uint8)
        lines = scanlines[:n]
        if depth == 1:
            lines[:, 0] = 0
            lines[:, 1:] = band
        else:
            pixels = band.astype(">u2", copy=False).view(np.uint8).reshape(n, 2 * width)
            lines[:, 0] = 1  # SUB: each byte minus the byte one pixel to its left
            lines[:, 1:3] = pixels[:, :2]
            np.subtract(pixels[:, 2:], pixels[:, :-2], out=lines[:, 3:])
        parts.append(compressor.compress(lines.data))
        rows += n
    if rows != height:
        raise ValueError(f"bands hold {rows} rows of a {height}-row image")
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8 * depth, 0, 0, 0, 0)
    return b"".join((_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", b"".join(parts)), _IEND))
