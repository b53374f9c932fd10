"""The assembled dataset in torchvision and Ultralytics (both on torch, in one venv: .venv-compat-torch)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from tests.compat.dataset import ROOT, SPLITS, doc


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
