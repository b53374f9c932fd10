"""Synthetic GT Studio-style colour masks (tests and benchmarks)."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt


def palette(n: int, seed: int = 7) -> list[int]:
    """`n` distinct, non-black 0xRRGGBB colours."""
    rng = np.random.default_rng(seed)
    colors: list[int] = []
    seen: set[int] = {0}
    while len(colors) < n:
        c = int(rng.integers(1, 1 << 24))
        if c not in seen:
            seen.add(c)
            colors.append(c)
    return colors


def paint(width: int, height: int, colors: list[int], seed: int = 1,
          unknown: int = 0x123456) -> npt.NDArray[np.uint8]:
    """RGBA mask: a stuff class band, instances (ellipses, some with holes), slivers, an
    unknown colour, and transparent pixels."""
    rng = np.random.default_rng(seed)
    bgr = np.zeros((height, width, 3), np.uint8)
    alpha = np.full((height, width), 255, np.uint8)

    def bgr_of(c: int) -> tuple[int, int, int]:
        return (c & 0xFF, (c >> 8) & 0xFF, c >> 16)

    bgr[height * 2 // 3:, :] = bgr_of(colors[0])  # "road"
    for i, c in enumerate(colors[1:], start=1):
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        ax = int(rng.integers(2, max(3, width // 12)))
        ay = int(rng.integers(2, max(3, height // 12)))
        cv2.ellipse(bgr, (cx, cy), (ax, ay), float(rng.integers(0, 180)), 0, 360,
                    bgr_of(c), -1)
        if i % 5 == 0 and ax > 6 and ay > 6:  # a hole showing the road/background
            cv2.ellipse(bgr, (cx, cy), (ax // 3, ay // 3), 0, 0, 360, (0, 0, 0), -1)
        if i % 7 == 0:  # a one-pixel sliver
            bgr[cy % height, max(0, cx - 20):cx] = bgr_of(c)
    bgr[: height // 20, : width // 20] = bgr_of(unknown)
    alpha[-(height // 25):, : width // 10] = 0
    return np.dstack([bgr, alpha])


def encode_png(image: npt.NDArray[np.uint8]) -> bytes:
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok
    return bytes(buf.tobytes())


def legend_for(colors: list[int], instances: bool = True) -> dict[str, str]:
    legend = {f"#{colors[0]:06x}": "road"}
    for i, c in enumerate(colors[1:], start=1):
        legend[f"#{c:06x}"] = f"car # {i}" if instances else "car"
    return legend
