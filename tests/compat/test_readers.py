"""The assembled dataset in the readers training teams use (`make compat`, its own venv).

Runs against `$GTCOCO_COMPAT_DATASET` (built by `tests/compat/build_dataset.py`); every
reader is the real package, pinned in `requirements-compat.txt`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(os.environ.get("GTCOCO_COMPAT_DATASET", "build/compat-dataset"))
SPLITS = ("train", "val")


def doc(kind: str, split: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "annotations" / f"{kind}_{split}.json").read_text())
    return data


def quiet_coco(path: Path) -> Any:
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        return COCO(str(path))


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


@pytest.mark.parametrize("split", SPLITS)
def test_torchvision_coco_detection_with_masks_reads_every_image(split: str) -> None:
    from torchvision.datasets import CocoDetection, wrap_dataset_for_transforms_v2

    with contextlib.redirect_stdout(io.StringIO()):
        dataset = CocoDetection(str(ROOT / "images" / split),
                                str(ROOT / "annotations" / f"instances_{split}.json"))
    wrapped = wrap_dataset_for_transforms_v2(dataset, target_keys=("boxes", "labels", "masks"))
    assert len(wrapped) == len(doc("instances", split)["images"])
    seen = 0
    for image, target in wrapped:
        if "boxes" in target:
            assert target["masks"].shape[0] == target["boxes"].shape[0] == len(target["labels"])
            assert target["masks"].shape[1:] == (image.height, image.width)
            seen += len(target["labels"])
    assert seen == len(doc("instances", split)["annotations"])


def test_fiftyone_imports_detections_segmentations_and_keypoints() -> None:
    import fiftyone as fo

    for split in SPLITS:
        for kind, label_types in (("instances", ["detections", "segmentations"]),
                                  ("keypoints", ["detections", "keypoints"])):
            name = f"gtcoco-{kind}-{split}"
            if fo.dataset_exists(name):
                fo.delete_dataset(name)
            dataset = fo.Dataset.from_dir(
                dataset_type=fo.types.COCODetectionDataset,
                data_path=str(ROOT / "images" / split),
                labels_path=str(ROOT / "annotations" / f"{kind}_{split}.json"),
                label_types=label_types, name=name)
            assert len(dataset) == len(doc(kind, split)["images"])
            field = "keypoints" if kind == "keypoints" else "detections"
            wanted = len(doc(kind, split)["annotations"])
            got = dataset.count(f"{field}.{field}") if wanted else 0
            assert got == wanted, (kind, split)
            if kind == "instances":
                confident = dataset.filter_labels(
                    "detections", fo.ViewField("reserved_attributes") != None)  # noqa: E711
                assert confident.count("detections.detections") > 0
            fo.delete_dataset(name)


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("fmt", "kind"), [("coco_instances", "instances"),
                                           ("coco_person_keypoints", "keypoints")])
def test_datumaro_imports_instances_and_keypoints(fmt: str, kind: str, split: str) -> None:
    import datumaro as dm

    path = ROOT / "annotations" / f"{kind}_{split}.json"
    dataset = dm.Dataset.import_from(str(path), fmt)
    assert len(dataset) == len(doc(kind, split)["images"])
    # Datumaro gives each COCO annotation a shape and its box, grouped under the COCO id.
    ids = [(item.id, a.id) for item in dataset for a in item.annotations]
    assert len(set(ids)) == len(doc(kind, split)["annotations"])
    if kind == "keypoints":
        points = [a for item in dataset for a in item.annotations if type(a).__name__ == "Points"]
        assert len(points) == len(doc(kind, split)["annotations"])


def test_datumaro_finds_and_imports_the_panoptic_task() -> None:
    import datumaro as dm

    dataset = dm.Dataset.import_from(str(ROOT), "coco_panoptic")
    assert {item.subset for item in dataset} <= set(SPLITS)
    masks = [a for item in dataset for a in item.annotations if type(a).__name__ == "Mask"]
    assert len(masks) == sum(len(a["segments_info"]) for s in SPLITS
                             for a in doc("panoptic", s)["annotations"])
    for mask in masks:
        assert mask.image.any()  # every segment has pixels in its PNG


@pytest.mark.parametrize("split", SPLITS)
def test_supervision_reads_every_box_and_mask(split: str) -> None:
    import supervision as sv

    dataset = sv.DetectionDataset.from_coco(
        images_directory_path=str(ROOT / "images" / split),
        annotations_path=str(ROOT / "annotations" / f"instances_{split}.json"),
        force_masks=True)
    assert len(dataset) == len(doc("instances", split)["images"])
    detections = sum(len(d) for _, _, d in dataset)
    assert detections == len(doc("instances", split)["annotations"])
    for _, image, found in dataset:
        if len(found):
            assert found.mask is not None and found.mask.shape[1:] == image.shape[:2]


def test_ultralytics_converts_every_annotation_to_yolo_segments(tmp_path: Path) -> None:
    import shutil

    from ultralytics.data.converter import convert_coco

    labels = tmp_path / "labels_in"
    labels.mkdir()
    for split in SPLITS:  # its converter reads every JSON of the folder: the instances only
        shutil.copy(ROOT / "annotations" / f"instances_{split}.json", labels)
    with contextlib.redirect_stdout(io.StringIO()):
        convert_coco(labels_dir=str(labels), save_dir=str(tmp_path / "yolo"),
                     use_segments=True, use_keypoints=False, cls91to80=False)
    for split in SPLITS:
        written = list((tmp_path / "yolo" / "labels" / split).rglob("*.txt"))  # instances_ cut
        lines = sum(len(p.read_text().splitlines()) for p in written)
        assert lines == len(doc("instances", split)["annotations"]), split
