"""Drawing a COCO image's annotations (`gtcoco preview`): boxes, polygons and RLE regions
filled, keypoints with their skeleton, each with a legible label.  Pure: pixels in, pixels
out."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from pycocotools import mask as mask_utils

Image = npt.NDArray[np.uint8]


def colour_of(category_id: int) -> tuple[int, int, int]:
    """A bright BGR colour per category, the same in every preview."""
    digest = hashlib.sha256(str(category_id).encode()).digest()
    return (80 + digest[0] % 176, 80 + digest[1] % 176, 80 + digest[2] % 176)


def canvas(width: int, height: int) -> Image:
    """A grey image of the right size where the image itself is not at hand."""
    return np.full((height, width, 3), 96, np.uint8)


def _fill(image: Image, mask: npt.NDArray[np.bool_], colour: tuple[int, int, int]) -> None:
    region = image[mask]
    image[mask] = (0.55 * region + 0.45 * np.array(colour)).astype(np.uint8)


def _label(image: Image, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    scale = max(0.4, min(image.shape[0], image.shape[1]) / 900)
    thickness = max(1, round(scale * 2))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    y = max(h + base, y)
    cv2.rectangle(image, (x, y - h - base), (x + w + 2, y + 1), colour, -1)
    cv2.putText(
        image,
        text,
        (x + 1, y - base + 1),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (0, 0, 0),
        thickness,
        cv2.LINE_AA,
    )


def draw(
    image: Image,
    annotations: Sequence[Mapping[str, Any]],
    categories: Mapping[int, Mapping[str, Any]],
    extras: Sequence[Mapping[str, Any]] = (),
) -> Image:
    """The image with every annotation drawn on a copy; `extras` are the lines and cuboids
    of `extras_<split>.json` (open polylines through their points)."""
    out = image.copy()
    height, width = out.shape[:2]
    thickness = max(1, round(min(width, height) / 400))
    for entry in extras:
        label = str(entry.get("label", entry.get("type", "")))
        colour = colour_of(int.from_bytes(hashlib.sha256(label.encode()).digest()[:4], "big"))
        line = np.asarray(entry.get("points") or [], np.float64).reshape(-1, 2)
        if len(line):
            path = line.round().astype(np.int32)
            cv2.polylines(
                out, [path], entry.get("type") == "cuboid", colour, thickness, cv2.LINE_AA
            )
            _label(out, label, int(path[0][0]), int(path[0][1]) - 2, colour)
    for ann in annotations:
        category = categories.get(int(ann["category_id"]), {})
        colour = colour_of(int(ann["category_id"]))
        segmentation = ann.get("segmentation")
        if isinstance(segmentation, dict):  # RLE: filled
            rle = segmentation
            if isinstance(rle.get("counts"), list):
                rle = mask_utils.frPyObjects(rle, height, width)
            _fill(out, mask_utils.decode(rle).astype(bool), colour)
        elif isinstance(segmentation, list) and segmentation and not ann.get("box_only"):
            layer = np.zeros((height, width), np.uint8)
            for polygon in segmentation:
                ring = np.asarray(polygon, np.float64).reshape(-1, 2).round().astype(np.int32)
                cv2.fillPoly(layer, [ring], 1)
                cv2.polylines(out, [ring], True, colour, thickness, cv2.LINE_AA)
            _fill(out, layer.astype(bool), colour)
        x, y, w, h = (round(float(v)) for v in ann["bbox"])
        cv2.rectangle(out, (x, y), (x + max(1, w), y + max(1, h)), colour, thickness)
        keypoints = ann.get("keypoints") or []
        points = {
            i // 3 + 1: (round(keypoints[i]), round(keypoints[i + 1]))
            for i in range(0, len(keypoints) - 2, 3)
            if keypoints[i + 2]
        }
        for a, b in category.get("skeleton", []):
            if a in points and b in points:
                cv2.line(out, points[a], points[b], colour, thickness, cv2.LINE_AA)
        for point in points.values():
            cv2.circle(out, point, thickness + 2, colour, -1, cv2.LINE_AA)
        _label(out, str(category.get("name", ann["category_id"])), x, y - 2, colour)
    return out
