"""Deflate streams written from byte runs: mask PNGs without passing over their pixels.

A mask's scanlines are mostly long runs of one byte (zeros between run starts in the
SUB-filtered index masks; 0x00 and 0xFF in the 1-bit colour masks).  zlib reads every
byte of them, but in deflate a run of n equal bytes is one literal and then matches of
distance 1 (what zlib's own Z_RLE strategy writes), so the compressed stream follows
from the runs alone: work in proportion to the runs, not the pixels, and many streams
in one vectorised pass (the Python per stream is slicing out its bytes).

Each stream is one fixed-Huffman block (RFC 1951 3.2.6), not final, ended on a byte
boundary as zlib's sync flush does, so it can sit between other deflate segments.  Its Adler-32
terms come from the runs as well (RFC 1950: A sums the bytes, B sums A after each byte).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from shared.raster.runs import IntArray

MOD_ADLER = 65521
_MAX_MATCH = 258


def _reversed(code: int, bits: int) -> int:
    """Huffman codes are sent most significant bit first into an LSB-first stream."""
    return int(format(code, f"0{bits}b")[::-1], 2)


def _fixed_tables() -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """(code, bits) of each literal byte, and of each match of length 3..258 at distance
    1 (length symbol, its extra bits, then distance code 0 in five bits)."""
    lit_code = np.zeros(256, dtype=np.int64)
    lit_bits = np.zeros(256, dtype=np.int64)
    for v in range(256):
        code, bits = (0x30 + v, 8) if v < 144 else (0x190 + v - 144, 9)
        lit_code[v], lit_bits[v] = _reversed(code, bits), bits
    # Length symbols 257..285: base lengths and extra bits (RFC 1951 3.2.5).
    bases, extras = [], []
    length = 3
    for symbol in range(257, 285):
        extra = 0 if symbol < 265 else (symbol - 261) // 4
        bases.append(length)
        extras.append(extra)
        length += 1 << extra
    bases.append(_MAX_MATCH)  # 285: 258 itself, no extra bits (284 stops at 257)
    extras.append(0)
    match_code = np.zeros(_MAX_MATCH + 1, dtype=np.int64)
    match_bits = np.zeros(_MAX_MATCH + 1, dtype=np.int64)
    for length in range(3, _MAX_MATCH + 1):
        k = len([b for b in bases if b <= length]) - 1
        symbol = 257 + k
        code, bits = (symbol - 256, 7) if symbol < 280 else (0xC0 + symbol - 280, 8)
        value = _reversed(code, bits) | ((length - bases[k]) << bits)  # distance code 0
        match_code[length], match_bits[length] = value, bits + extras[k] + 5
    return lit_code, lit_bits, match_code, match_bits


_LIT_CODE, _LIT_BITS, _MATCH_CODE, _MATCH_BITS = _fixed_tables()
_RESTS = _MAX_MATCH  # what follows a run's literal in its token: 0..257 bytes
_M258_CODE, _M258_BITS = int(_MATCH_CODE[_MAX_MATCH]), int(_MATCH_BITS[_MAX_MATCH])


def _run_tables() -> tuple[IntArray, IntArray]:
    """Code and bits of the token for a byte value v and rest r (index v * 258 + r): the
    literal, then r more bytes as one match (r >= 3) or as r literals."""
    value = np.repeat(np.arange(256), _RESTS)
    rest = np.tile(np.arange(_RESTS), 256)
    lit, lit_bits = _LIT_CODE[value], _LIT_BITS[value]
    match = rest >= 3
    after = np.where(match, _MATCH_CODE[np.maximum(rest, 3)], 0)
    after_bits = np.where(match, _MATCH_BITS[np.maximum(rest, 3)], 0)
    for k in (1, 2):  # one or two more literals
        at = rest == k
        after[at] = sum(lit[at] << (j * lit_bits[at]) for j in range(k))
        after_bits[at] = k * lit_bits[at]
    return lit | (after << lit_bits), lit_bits + after_bits


_RUN_CODE, _RUN_BITS = _run_tables()
_END_BITS = 7  # end-of-block: symbol 256, code 0000000
_FIXED = 0b010  # block header bits, LSB first: BFINAL=0, BTYPE=01
_EMPTY_STORED = b"\x00\x00\xff\xff"  # LEN 0, NLEN: after its 3 header bits and padding


@dataclass(frozen=True)
class Pieces:
    """Streams of `sizes[s]` bytes that are zero but for pieces: `count` (>= 1) bytes of
    `value` (1..255) from `pos` in stream `stream`, sorted by (stream, pos), disjoint."""

    sizes: IntArray
    stream: IntArray
    pos: IntArray
    value: IntArray
    count: IntArray


def adler_terms(pieces: Pieces) -> tuple[IntArray, IntArray]:
    """Per stream, modulo 65521: the sum of its bytes, and the sum of each byte times the
    number of bytes from it to the end (itself included): what its data adds to
    Adler-32's A and B beyond B's n * A_before (`continue_adler`)."""
    n, v, pos, stream = pieces.count, pieces.value, pieces.pos, pieces.stream
    streams = pieces.sizes.size
    total = int(pieces.sizes.max(initial=0))
    # Exact sums below 255 * size**2 < 2**63 for streams up to 190 MB; beyond, modulo
    # per piece (slower).
    exact = total < 1 << 27
    plain = v * n
    # Sum over the piece's bytes of their offsets: n * pos + n (n - 1) / 2.
    offsets = v * ((n * (2 * pos + n - 1)) // 2) if exact else _mod_offsets(v, n, pos)
    sums = np.zeros(streams, dtype=np.int64)
    moments = np.zeros(streams, dtype=np.int64)
    if stream.size:
        first = np.flatnonzero(_changes(stream))
        at = stream[first]
        sums[at] = np.add.reduceat(plain, first)
        moments[at] = np.add.reduceat(offsets, first)
    sums %= MOD_ADLER
    moments %= MOD_ADLER
    weighted = (pieces.sizes % MOD_ADLER * sums - moments) % MOD_ADLER
    return sums, weighted


def _mod_offsets(v: IntArray, n: IntArray, pos: IntArray) -> IntArray:
    m = MOD_ADLER
    even = n % 2 == 0
    half = np.where(
        even, (n // 2) % m * ((2 * pos + n - 1) % m), n % m * ((pos + (n - 1) // 2) % m)
    )
    terms: IntArray = v * (half % m) % m
    return terms


def continue_adler(adler: int, count: int, plain: int, weighted: int) -> int:
    """Adler-32 after `count` bytes whose terms (`adler_terms`) are plain and weighted."""
    a, b = adler & 0xFFFF, adler >> 16
    b = (b + count % MOD_ADLER * a + weighted) % MOD_ADLER
    return (b << 16) | ((a + plain) % MOD_ADLER)


def _split(count: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """For runs of `count` equal bytes: the key of the token for all but whole matches
    of 258 (value 0), how many such matches follow it, and the runs that have some."""
    rest = count - 1
    long = np.flatnonzero(rest >= _MAX_MATCH)
    full = np.zeros(0, dtype=np.int64)
    if long.size:
        full, rest[long] = np.divmod(rest[long], _MAX_MATCH)
    return rest, full, long


def deflate_pieces(pieces: Pieces) -> list[bytes]:
    """Raw deflate data of each stream: one fixed-Huffman block, not final, followed by
    an empty stored block so that it ends on a byte boundary (zlib's sync flush).

    A run of n equal bytes is a literal, then n - 1 bytes of distance-1 matches; those
    matches copy the byte before, so their lengths may come in any order: a run's
    literal and its rest below 258 (one match, or one or two literals) make one code,
    the matches of 258 follow it.  Each piece is one token (the zeros before it, then
    it) unless the zeros take matches of 258; each stream ends with its last zeros.
    """
    sizes, count = pieces.sizes, pieces.count
    streams = sizes.size
    # Entries: each piece, then per stream one for the zeros after its last piece.  The
    # temporaries are dropped as soon as used: they are the writer's peak memory.
    ends = np.cumsum(np.bincount(pieces.stream, minlength=streams)) + np.arange(streams)
    first = ends - np.diff(ends, prepend=-1) + 1
    entries = count.size + streams
    is_piece = np.ones(entries, dtype=bool)
    is_piece[ends] = False
    gap = np.empty(entries, dtype=np.int64)  # positions, then the zeros before each
    gap[is_piece], gap[ends] = pieces.pos, sizes
    length = np.ones(entries, dtype=np.int64)  # 1 at the ends: any valid table key
    length[is_piece] = count
    starts = gap[first]
    gap[1:] -= gap[:-1] + length[:-1]
    gap[first] = starts
    key = np.zeros(entries, dtype=np.int64)
    key[is_piece] = pieces.value
    del is_piece, starts
    run_rest, run_full, run_long = _split(length)
    del length
    key *= _RESTS
    key += run_rest
    del run_rest
    run_code, run_bits = _RUN_CODE[key], _RUN_BITS[key]
    del key
    run_code[ends], run_bits[ends] = 0, 0
    # The zeros before the entry: a literal 0 and the rest, when there are any.
    zeros = gap > 0
    gap_rest, gap_full, gap_long = _split(np.maximum(gap, 1))
    del gap
    gap_code, gap_bits = _RUN_CODE[gap_rest], _RUN_BITS[gap_rest]
    del gap_rest
    gap_code *= zeros
    gap_bits *= zeros
    del zeros
    gap_code[first] = (gap_code[first] << 3) | _FIXED
    gap_bits[first] += 3
    # One code for the zeros and the piece, unless matches of 258 come between.
    code = run_code << gap_bits
    code |= gap_code
    code[gap_long] = gap_code[gap_long]
    del gap_code
    bits = gap_bits + run_bits
    between = gap_full * _M258_BITS
    bits[gap_long] += between
    after = run_full * _M258_BITS
    bits[run_long] += after
    tail = _END_BITS + 3  # and the stored block's header (zeros)
    payload = np.add.reduceat(bits, first) + tail
    bits[ends] += tail + (-payload) % 8 + 8 * len(_EMPTY_STORED)
    end = np.cumsum(bits)
    at = end - bits
    words = np.zeros(int(end[-1]) // 64 + 2, dtype=np.uint64)
    _or_tokens(words, at, code)
    del code
    if gap_long.size:
        _or_copies(words, at[gap_long] + gap_bits[gap_long], gap_full)
        at_run = at[gap_long] + gap_bits[gap_long] + between
        _or_tokens(words, at_run, run_code[gap_long])
    if run_long.size:
        # After the entry's codes (a stream's padding is on its end entry, never long).
        _or_copies(words, at[run_long] + bits[run_long] - after, run_full)
    data = words.astype("<u8", copy=False).view(np.uint8)
    stream_end = end[ends] // 8
    # The stored block's LEN is zeros already; NLEN is its complement.
    data[stream_end - 2] = 0xFF
    data[stream_end - 1] = 0xFF
    flat = data.tobytes()
    bounds = [0, *stream_end.tolist()]
    return [flat[a:b] for a, b in pairwise(bounds)]


def _or_copies(words: npt.NDArray[np.uint64], starts: IntArray, copies: IntArray) -> None:
    """OR `copies[i]` matches of 258 in a row from bit `starts[i]` on."""
    total = int(copies.sum())
    if total:
        k = np.arange(total) - np.repeat(np.cumsum(copies) - copies, copies)
        at = np.repeat(starts, copies) + _M258_BITS * k
        _or_tokens(words, at, np.full(total, _M258_CODE, dtype=np.int64))


def _changes(values: IntArray) -> npt.NDArray[np.bool_]:
    """Where a value differs from the one before (the first always does)."""
    out = np.empty(values.size, dtype=bool)
    out[:1] = True
    np.not_equal(values[1:], values[:-1], out=out[1:])
    return out


def _or_tokens(words: npt.NDArray[np.uint64], at: IntArray, code: IntArray) -> None:
    """OR codes of at most 64 bits into an LSB-first bit stream of 64-bit words at bit
    positions `at` (ascending; the codes' bits disjoint)."""
    word, shift = at >> 6, (at & 63).astype(np.uint64)
    code = code.astype(np.uint64)
    group = np.flatnonzero(_changes(word))
    words[word[group]] |= np.bitwise_or.reduceat(code << shift, group)
    cross = np.flatnonzero((shift > 0) & ((code >> (np.uint64(64) - shift)) > 0))
    words[word[cross] + 1] |= code[cross] >> (np.uint64(64) - shift[cross])
