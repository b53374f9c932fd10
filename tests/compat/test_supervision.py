"""The assembled dataset in supervision: boxes and masks."""

from __future__ import annotations

import pytest

from tests.compat.dataset import ROOT, SPLITS, doc


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
