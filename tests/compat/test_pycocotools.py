"""The assembled dataset in pycocotools: decoding every mask, and COCOeval with the truth as detections."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from tests.compat.dataset import ROOT, SPLITS, doc, quiet_coco


def test_the_dataset_is_there_with_every_kind_of_annotation() -> None:
    counts = {k: sum(len(doc(k, s)["annotations"]) for s in SPLITS)
              for k in ("instances", "keypoints", "panoptic")}
    assert counts["instances"] > 100 and counts["keypoints"] >= 5 and counts["panoptic"] >= 2


@pytest.mark.parametrize("split", SPLITS)
def test_pycocotools_decodes_and_evaluates_segm_bbox_and_keypoints(split: str) -> None:
    from pycocotools.cocoeval import COCOeval

    for kind, iou_types in (("instances", ("bbox", "segm")), ("keypoints", ("bbox", "keypoints"))):
        path = ROOT / "annotations" / f"{kind}_{split}.json"
        truth = quiet_coco(path)
        anns = truth.dataset["annotations"]
        if not anns:
            continue
        for ann in anns:
            truth.annToMask(ann)
        for iou in iou_types:
            results = [{**{k: a[k] for k in ("image_id", "category_id", "bbox", "segmentation")},
                        **({"keypoints": a["keypoints"]} if iou == "keypoints" else {}),
                        "score": 1.0} for a in anns]
            # One sigma per keypoint: keypoint evaluation runs one category at a time.
            groups = ([[c] for c in truth.getCatIds() if truth.getAnnIds(catIds=[c])]
                      if iou == "keypoints" else [truth.getCatIds()])
            for cat_ids in groups:
                with contextlib.redirect_stdout(io.StringIO()):
                    run = COCOeval(truth, truth.loadRes(results), iou)
                    run.params.catIds = cat_ids
                    if iou == "keypoints":
                        count = len(truth.loadCats(cat_ids)[0]["keypoints"])
                        run.params.kpt_oks_sigmas = np.full(count, 0.05)
                    run.evaluate()
                    run.accumulate()
                    run.summarize()
                assert run.stats[0] == pytest.approx(1.0), (kind, split, iou, cat_ids)
