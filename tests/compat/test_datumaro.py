"""The assembled dataset in Datumaro: instances and keypoints by file, panoptic by directory."""

from __future__ import annotations

import pytest

from tests.compat.dataset import ROOT, SPLITS, doc


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
