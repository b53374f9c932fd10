"""Validation every COCO output of the tests goes through: pycocotools must accept it."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO

REQUIRED = ("info", "licenses", "images", "annotations", "categories")


def load_coco(doc: dict[str, Any] | Path | bytes) -> COCO:
    """Load with pycocotools and decode every segmentation; return the COCO object."""
    if isinstance(doc, Path):
        doc = json.loads(doc.read_text())
    elif isinstance(doc, bytes):
        doc = json.loads(doc)
    assert isinstance(doc, dict)
    for key in REQUIRED:
        assert key in doc, f"COCO lacks {key}"
    coco = COCO()
    coco.dataset = doc
    # pycocotools prints progress to stdout; keep the test output readable.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        coco.createIndex()
    images = {i["id"]: i for i in doc["images"]}
    category_ids = {c["id"] for c in doc["categories"]}
    ids = [a["id"] for a in doc["annotations"]]
    assert len(ids) == len(set(ids)), "annotation ids are not unique"
    for ann in doc["annotations"]:
        assert isinstance(ann["id"], int) and isinstance(ann["category_id"], int)
        assert ann["category_id"] in category_ids
        assert ann["image_id"] in images
        assert ann["iscrowd"] == 0
        x, y, w, h = ann["bbox"]
        image = images[ann["image_id"]]
        assert x >= 0 and y >= 0 and x + w <= image["width"] + 1e-6
        assert y + h <= image["height"] + 1e-6
        assert ann["area"] >= 0
        seg = ann["segmentation"]
        if seg:
            if isinstance(seg, list):
                assert all(len(p) >= 6 and len(p) % 2 == 0 for p in seg), "bad polygon"
            mask = coco.annToMask(ann)
            assert mask.shape == (image["height"], image["width"])
            if ann.get("box_only"):  # the shape is its box: the polygon is its corners
                assert seg == [[x, y, x + w, y, x + w, y + h, x, y + h]], "box_only: not the box"
                assert ann["area"] == round(w * h, 2) > 0, "box_only: area != w*h"
            else:
                assert int(mask.sum()) == round(ann["area"]), "area != decoded pixels"
    return coco


def decode(coco: COCO, ann: dict[str, Any]) -> np.ndarray:
    return np.asarray(coco.annToMask(ann), dtype=bool)
