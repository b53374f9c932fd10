"""Splits, file names, categories and panoptic segments of an assembled dataset."""

from __future__ import annotations

import posixpath
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.coco import dataset as ds
from shared.errors import BadRequest

keys = st.text(min_size=1, max_size=30)


@given(st.lists(keys, min_size=1, max_size=40, unique=True), st.lists(keys, max_size=40))
def test_a_jobs_split_depends_on_its_key_alone(first: list[str], more: list[str]) -> None:
    splits = ds.parse_splits(["train=0.7", "val=0.2", "test=0.1"])
    before = {k: ds.split_of(k, splits) for k in first}
    # More exports arriving (in any order) move no job that was already there.
    after = {k: ds.split_of(k, splits) for k in [*more, *reversed(first)]}
    assert all(after[k] == before[k] for k in first)


def test_split_shares_follow_the_fractions() -> None:
    splits = ds.parse_splits(["train=0.8", "val=0.2"])
    counts = Counter(ds.split_of(f"batch/job-{i:06d}", splits) for i in range(20_000))
    assert abs(counts["train"] / 20_000 - 0.8) < 0.01
    assert ds.parse_splits([]) == (("train", 0.9), ("val", 0.1))


@pytest.mark.parametrize("specs", [["train=0.5"], ["train=0.5", "val=0.6"], ["train"],
                                   ["Train=1"], ["train=x"], ["train=0", "val=1"],
                                   ["a=0.5", "a=0.5"], ["../x=1"]])
def test_bad_splits_are_refused(specs: list[str]) -> None:
    with pytest.raises(BadRequest) as caught:
        ds.parse_splits(specs)
    assert caught.value.code == "invalid_split"


@settings(max_examples=200)
@given(st.text(max_size=60), st.text(max_size=40), st.sampled_from(["http", "https", "gs"]),
       st.text(max_size=20), st.one_of(st.none(), st.integers(0, 999)))
def test_an_image_path_is_a_safe_relative_name_with_an_extension(
    path: str, key: str, scheme: str, host: str, frame: int | None
) -> None:
    url = f"{scheme}://{host.replace('/', '')}/{path}"
    for image in ({"image_url": url}, {"image_url": None}, {}):
        name = ds.image_path(image, key or "k", frame)
        assert not name.startswith("/") and "//" not in name and "\\" not in name
        assert all(seg not in {"", ".", ".."} for seg in name.split("/"))
        assert name.lower().endswith(ds._IMAGE_EXTENSIONS)
        assert len(name) <= ds.MAX_FILE_NAME_CHARS + 10


def test_the_image_path_keeps_the_folders_that_tell_cameras_apart() -> None:
    names = {ds.image_path({"image_url": f"http://cdn.example.com/run1/cam{c}/000001.jpg"}, "k", None)
             for c in range(4)}
    assert names == {f"cdn.example.com/run1/cam{c}/000001.jpg" for c in range(4)}
    # A raster pair has no image URL: named from its key, with an extension.
    assert ds.image_path({"image_url": None}, "masks/scene_01", None) == "masks/scene_01.png"


@given(st.lists(st.tuples(st.sampled_from(["a/x.jpg", "a/X.JPG", "a/x.png", "b/x.jpg"]), keys),
                max_size=30))
def test_file_names_are_unique_without_case_or_extension(claims: list[tuple[str, str]]) -> None:
    names = ds.FileNames()
    given_out = [names.claim(name, key) for name, key in claims]
    stems = [ds.stem_of(n) for n in given_out]
    assert len(set(stems)) == len(stems)
    assert len({ds.panoptic_name(n).lower() for n in given_out}) == len(given_out)
    for (name, _), out in zip(claims, given_out, strict=True):
        assert posixpath.splitext(out)[1] == posixpath.splitext(name)[1]


def test_categories_merge_keypoints_and_refuse_conflicting_ids() -> None:
    cats = ds.Categories.from_registry({"categories": [{"id": 1, "name": "car"},
                                                       {"id": 2, "name": "face"}]})
    cats.learn({"categories": [{"id": 2, "name": "face", "keypoints": ["1", "2"],
                                "skeleton": [[1, 2]]}]})
    cats.learn({"categories": [{"id": 2, "name": "face", "keypoints": ["1", "2", "3"],
                                "skeleton": [[2, 3]]}]})
    listed = {c["id"]: c for c in cats.keypoints_list()}
    assert listed[1]["keypoints"] == [] and listed[1]["skeleton"] == []
    assert listed[2]["keypoints"] == ["1", "2", "3"] and listed[2]["skeleton"] == [[1, 2], [2, 3]]
    ann = ds.padded_keypoints({"keypoints": [1.0, 2.0, 2], "category_id": 2}, 3)
    assert ann["keypoints"] == [1.0, 2.0, 2, 0.0, 0.0, 0, 0.0, 0.0, 0]
    with pytest.raises(BadRequest):
        cats.learn({"categories": [{"id": 1, "name": "bus"}]})


def test_things_are_vector_shapes_and_numbered_regions_stuff_is_bare_regions() -> None:
    coco = {"annotations": [{"id": 1, "category_id": 5}, {"id": 2, "category_id": 6},
                            {"id": 3, "category_id": 7}]}
    legend = {"entries": [{"annotation_id": 2, "category_id": 6, "instance": 3},
                          {"annotation_id": 3, "category_id": 7, "instance": None}]}
    assert ds.things_of(coco, legend) == {5, 6}


def test_panoptic_ids_match_segments_and_stuff_regions_merge() -> None:
    instances = np.zeros((6, 8), np.uint16)
    instances[0:2, 0:2] = 1  # car #1
    instances[0:2, 4:6] = 2  # car #2
    instances[4:6, 0:3] = 3  # road, one colour
    instances[4:6, 5:8] = 4  # road, another colour: one stuff segment with the first
    instances[3, 7] = 300  # a region whose id needs two bytes
    legend = {"entries": [
        {"annotation_id": 1, "category_id": 2, "pixels": 4},
        {"annotation_id": 2, "category_id": 2, "pixels": 4},
        {"annotation_id": 3, "category_id": 3, "pixels": 6},
        {"annotation_id": 4, "category_id": 3, "pixels": 6},
        {"annotation_id": 300, "category_id": 2, "pixels": 1},
        {"annotation_id": None, "category_id": 2, "pixels": 0},
    ]}
    boxes = {1: [0, 0, 2, 2], 2: [4, 0, 2, 2], 3: [0, 4, 3, 2], 4: [5, 4, 3, 2], 300: [7, 3, 1, 1]}
    rgb, segments = ds.panoptic_segments(instances, legend, boxes, things={2})
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    ids = r + 256 * g + 65536 * b
    values, counts = np.unique(ids, return_counts=True)
    found = dict(zip(values.tolist(), counts.tolist(), strict=True))
    by_id = {s["id"]: s for s in segments}
    assert set(found) - {0} == set(by_id) == {1, 2, 3, 300}
    for sid, seg in by_id.items():
        assert seg["area"] == found[sid]  # every segment's pixels are in the PNG
        ys, xs = np.nonzero(ids == sid)
        assert seg["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert by_id[3]["category_id"] == 3 and by_id[3]["area"] == 12  # merged stuff
    assert found[0] == instances.size - 4 - 4 - 12 - 1  # void
