"""Mask decoding: libspng (pyspng) where it takes the PNG, OpenCV otherwise, the same pixels."""

from __future__ import annotations

import io

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from shared.raster import pngread
from shared.raster.pngread import decode_png, spng_decodes
from shared.raster.regions import decode_mask
from tests.masks import encode_png, paint, palette


def _pil(array: npt.NDArray[np.uint8], mode: str, **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, "PNG", **save)
    return buffer.getvalue()


def _rgba(width: int = 97, height: int = 61) -> npt.NDArray[np.uint8]:
    bgra = paint(width, height, palette(12))
    rgba = np.ascontiguousarray(bgra[..., [2, 1, 0, 3]])
    rgba[::7, ::5, 3] = 0  # transparent pixels whose colour must be ignored
    rgba[3::11, ::3, 3] = 128  # half alpha: still the colour
    return rgba


def _cases() -> dict[str, tuple[bytes, bool]]:
    """PNG bytes, and whether libspng should take them."""
    rgba = _rgba()
    grey = rgba[..., 0]
    palette_image = Image.fromarray(rgba[..., :3], "RGB").quantize(16)
    buffer = io.BytesIO()
    palette_image.save(buffer, "PNG", transparency=0)
    return {
        "rgba": (_pil(rgba, "RGBA"), True),
        "rgb": (_pil(np.ascontiguousarray(rgba[..., :3]), "RGB"), True),
        "rgba_opencv_written": (encode_png(paint(64, 40, palette(9))), True),
        "rgb_trns": (_pil(np.ascontiguousarray(rgba[..., :3]), "RGB",
                          transparency=(int(rgba[0, 0, 0]), int(rgba[0, 0, 1]),
                                        int(rgba[0, 0, 2]))), False),
        "grey": (_pil(np.ascontiguousarray(grey), "L"), False),
        "grey_alpha": (_pil(np.ascontiguousarray(rgba[..., [0, 3]]), "LA"), False),
        "palette_trns": (buffer.getvalue(), False),
        "rgba16": (cv2.imencode(".png", (rgba.astype(np.uint16) * 257)[..., [2, 1, 0, 3]])[1]
                   .tobytes(), False),
        "interlaced": (_interlaced(rgba), False),
    }


def _interlaced(rgba: npt.NDArray[np.uint8]) -> bytes:
    """An Adam7 PNG (Pillow cannot write one: the IHDR flag and data from zlib by hand)."""
    import struct
    import zlib

    height, width = rgba.shape[:2]
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
              (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = rgba[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\x00" + row.tobytes() for row in sub)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 1)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_png_type_decodes_to_opencvs_pixels(name: str) -> None:
    data, spng = CASES[name]
    assert spng_decodes(data) is (spng and pngread.SPNG)
    mine, rgb_order = decode_png(data)
    theirs, _ = decode_png(data, spng=False)
    assert mine is not None and theirs is not None
    if rgb_order:  # libspng's channel order
        mine = cv2.cvtColor(mine, cv2.COLOR_RGBA2BGRA if mine.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("name", sorted(CASES))
def test_decode_mask_gives_the_same_mask_either_way(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = CASES[name]
    mine = decode_mask(data, 1 << 30).packed.copy()
    monkeypatch.setattr(pngread, "spng_decodes", lambda _data: False)
    theirs = decode_mask(data, 1 << 30).packed
    np.testing.assert_array_equal(mine, theirs)


def test_libspng_is_what_decodes_here() -> None:
    """pyspng is pinned for this platform: the fast path must not silently turn off."""
    assert pngread.SPNG and pngread.DECODER.startswith("libspng")


@pytest.mark.parametrize("cut", [40, 100, -200, -20, -12])
def test_a_truncated_png_is_what_opencv_makes_of_it(cut: int) -> None:
    """Whatever is cut (header, pixels, the end chunk), libspng gives OpenCV's pixels or
    refuses and OpenCV answers, as it always did (None, or what it could read)."""
    data = CASES["rgba"][0][:cut]
    mine, rgb_order = decode_png(data)
    theirs, _ = decode_png(data, spng=False)
    if theirs is None:
        assert mine is None
        return
    assert mine is not None
    if rgb_order:
        mine = cv2.cvtColor(mine, cv2.COLOR_RGBA2BGRA)
    np.testing.assert_array_equal(mine, theirs)
