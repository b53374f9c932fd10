"""Deflate from runs, inflated by zlib: the bytes, the end of each block, the checksums."""

from __future__ import annotations

import zlib

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.raster.deflate import MOD_ADLER, Pieces, adler_terms, continue_adler, deflate_pieces

_FINAL_EMPTY_BLOCK = b"\x03\x00"


@st.composite
def streams(draw: st.DrawFn) -> tuple[Pieces, list[bytes]]:
    """Streams of zeros with pieces: gaps and pieces short (literals only), of a match,
    and longer than one or several matches of 258, at a stream's start and end."""
    lengths = st.one_of(st.integers(1, 4), st.integers(1, 300), st.integers(255, 1100))
    sizes, stream, pos, value, count, expected = [], [], [], [], [], []
    for s in range(draw(st.integers(1, 4))):
        data = bytearray()
        for _ in range(draw(st.integers(0, 6))):
            data += bytes(draw(st.one_of(st.just(0), lengths)))
            n = draw(lengths)
            v = draw(st.sampled_from([1, 0xFF, 0x80]) | st.integers(1, 255))
            stream.append(s)
            pos.append(len(data))
            value.append(v)
            count.append(n)
            data += bytes([v]) * n
        data += bytes(draw(st.one_of(st.just(0), lengths)))
        sizes.append(len(data))
        expected.append(bytes(data))
    ints = [np.array(x, dtype=np.int64) for x in (sizes, stream, pos, value, count)]
    return Pieces(*ints), expected


def _inflated(segment: bytes) -> bytes:
    inflate = zlib.decompressobj(-15)
    out = inflate.decompress(segment + _FINAL_EMPTY_BLOCK)
    assert inflate.eof and not inflate.unused_data  # nothing after the final block
    return out


@settings(max_examples=300)
@given(streams())
@example((Pieces(*[np.array(x, dtype=np.int64) for x in ([0], [], [], [], [])]), [b""]))
def test_each_stream_inflates_to_its_bytes(case: tuple[Pieces, list[bytes]]) -> None:
    pieces, expected = case
    segments = deflate_pieces(pieces)
    assert [_inflated(s) for s in segments] == expected
    # Ends on a byte boundary: any deflate data may follow.
    assert all(s.endswith(b"\x00\x00\xff\xff") for s in segments)


@settings(max_examples=200)
@given(streams(), st.integers(1, 2**32 - 1))
def test_adler_terms_continue_any_checksum(case: tuple[Pieces, list[bytes]], start: int) -> None:
    pieces, expected = case
    start = (start % MOD_ADLER) | ((start >> 16) % MOD_ADLER) << 16
    plain, weighted = adler_terms(pieces)
    for data, a, b in zip(expected, plain, weighted, strict=True):
        assert continue_adler(start, len(data), a, b) == zlib.adler32(data, start)


def test_adler_terms_of_streams_too_long_for_exact_sums() -> None:
    """Past 2**27 bytes the sums are taken modulo per piece: checked against sums in
    Python's integers (the stream itself would be 134 MB)."""
    size = (1 << 27) + 12345
    pos = np.array([0, 7, 1 << 26, size - 300], dtype=np.int64)
    count = np.array([3, 1 << 20, 99991, 300], dtype=np.int64)
    value = np.array([255, 1, 200, 17], dtype=np.int64)
    pieces = Pieces(np.array([size]), np.zeros(4, dtype=np.int64), pos, value, count)
    plain, weighted = adler_terms(pieces)
    a = sum(int(v) * int(n) for v, n in zip(value, count, strict=True))
    # B: each byte times the bytes from it to the end, summed in Python's integers.
    b = sum(
        int(v) * sum(range(size - int(p0) - int(n) + 1, size - int(p0) + 1))
        for v, p0, n in zip(value, pos, count, strict=True)
    )
    assert (plain[0], weighted[0]) == (a % MOD_ADLER, b % MOD_ADLER)


def test_adler_terms_where_exact_int64_sums_would_overflow() -> None:
    """A piece of 2**24 bytes of 255 from 2**32 on: the sum of its bytes times their
    offsets is past 2**63."""
    size = (1 << 32) + (1 << 25)
    p0, n, v = 1 << 32, 1 << 24, 255
    one = np.array([0], dtype=np.int64)
    pieces = Pieces(np.array([size]), one, one + p0, one + v, one + n)
    plain, weighted = adler_terms(pieces)
    # In Python's integers: the sum over the piece of (size - p), in closed form.
    moment = v * (n * p0 + n * (n - 1) // 2)
    assert moment > 2**63
    b = v * n * size - moment
    assert (plain[0], weighted[0]) == (v * n % MOD_ADLER, b % MOD_ADLER)
