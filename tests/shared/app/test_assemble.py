"""`gtcoco assemble`: converted outputs -> one dataset a training job loads."""

from __future__ import annotations

import contextlib
import copy
import io
import ipaddress
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from shared.app.assemble import Source
from shared.app.assemble_shards import plan, request_of
from shared.app.cli import main
from shared.app.runtime import build_assembler, fetch_policy
from shared.coco.dataset import split_of, stem_of
from shared.config import Config
from shared.io.storage import LocalStore, MemoryStore
from tests.cocoutil import load_coco
from tests.httpserver import CountingServer
from tests.masks import encode_png

CAMERAS, FRAMES = 4, 12
SKY_A, SKY_B, CAR_1, CAR_2, UNKNOWN = 0x87CEEB, 0x6699CC, 0xFF0000, 0x00FF00, 0x123456


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


def camera_batch(cameras: int = CAMERAS, frames: int = FRAMES, first: int = 0) -> list[Any]:
    """Jobs of several cameras numbering their frames alike (same last URL segment)."""
    jobs = []
    for c in range(cameras):
        for i in range(first, first + frames):
            jobs.append({
                "reference_id": f"cam{c}/{i:06d}",
                "image_url": f"http://cdn.example.com/run1/cam{c}/{i:06d}.jpg",
                "width": 640, "height": 480,
                "maker_response": {
                    "rectangles": {"data": [{"_id": f"r{c}{i}", "label": "car",
                                             "attributes": {"confidence": {"value": "0.9"},
                                                            "make": {"value": "vw"}},
                                             "coordinates": [{"x": 0.1, "y": 0.1},
                                                             {"x": 0.3, "y": 0.4}]}]},
                    "lines": {"data": [{"_id": f"l{c}{i}", "label": "lane", "points": {
                        "a": {"x": 0.0, "y": 1.0}, "b": {"x": 0.5, "y": 0.5}}}]},
                    "polygons": {"data": [{"_id": f"p{c}{i}", "label": "person", "points": {
                        "a": {"x": 0.5, "y": 0.5}, "b": {"x": 0.7, "y": 0.5},
                        "c": {"x": 0.6, "y": 0.8}}}]},
                },
            })
    return jobs


def landmarks(ref: str, points: list[tuple[float, float]]) -> dict[str, Any]:
    return {"reference_id": ref, "image_url": f"http://cdn.example.com/faces/{ref}.png",
            "width": 100, "height": 100, "maker_response": {"landmarks": {"data": [{
                "_id": f"lm-{ref}", "label": "face",
                "points": {f"p{i}": {"x": x, "y": y, "label": i + 1}
                           for i, (x, y) in enumerate(points)},
                "edges": {"e1": ["p0", "p1"]} if len(points) > 1 else {}}]}}}


def bgr(c: int) -> tuple[int, int, int]:
    return (c & 0xFF, (c >> 8) & 0xFF, c >> 16)


def raster_pair(folder: Path, name: str) -> None:
    """Two colours of the bare class `sky` (stuff), two numbered cars (things), an unknown
    colour and transparent pixels."""
    image = np.zeros((40, 60, 4), np.uint8)
    image[..., 3] = 255
    image[0:10, :, :3] = bgr(SKY_A)
    image[10:16, 0:30, :3] = bgr(SKY_B)
    image[20:30, 5:15, :3] = bgr(CAR_1)
    image[22:34, 30:50, :3] = bgr(CAR_2)
    image[36:40, 0:4, :3] = bgr(UNKNOWN)
    image[36:40, 50:60, 3] = 0
    (folder / f"{name}.png").write_bytes(encode_png(image))
    legend = {f"#{SKY_A:06x}": "sky", f"#{SKY_B:06x}": "sky",
              f"#{CAR_1:06x}": "car # 1", f"#{CAR_2:06x}": "car # 2"}
    (folder / f"{name}.json").write_text(json.dumps(legend))


def exports(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cams.json").write_text(json.dumps(camera_batch()))
    (folder / "face_one.json").write_text(json.dumps(landmarks("one", [(0.5, 0.5)])))
    (folder / "face_five.json").write_text(json.dumps(landmarks(
        "five", [(0.2, 0.2), (0.4, 0.2), (0.3, 0.3), (0.25, 0.4), (0.35, 0.4)])))
    (folder / "face_line.json").write_text(json.dumps(landmarks(
        "line", [(0.2, 0.5), (0.4, 0.5), (0.6, 0.5)])))
    raster_pair(folder, "scene_01")
    return folder


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("assemble")
    code, out, _ = run("convert", str(exports(root / "in")), "--out", str(root / "out"), "-q")
    assert code == 0, out
    return root / "out"


@pytest.fixture(scope="module")
def dataset(converted: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("ds") / "cams"
    code, out, err = run("assemble", str(converted), "--out", str(target),
                         "--split", "train=0.6", "--split", "val=0.4")
    assert code == 0, out + err
    return target


def read(path: Path) -> Any:
    return json.loads(path.read_text())


SPLITS = ("train", "val")


def test_one_file_per_split_and_task_each_loading_in_pycocotools(dataset: Path) -> None:
    seen_images: set[str] = set()
    total = {"images": 0, "instances": 0, "keypoints": 0}
    for split in SPLITS:
        instances = read(dataset / "annotations" / f"instances_{split}.json")
        keypoints = read(dataset / "annotations" / f"keypoints_{split}.json")
        coco = load_coco(instances)  # decodes every segmentation
        load_coco(keypoints)
        assert isinstance(instances["info"]["year"], int)
        for doc in (instances, keypoints):
            ids = [a["id"] for a in doc["annotations"]]
            assert ids == list(range(1, len(ids) + 1))  # ints, unique in the file
            assert all(a["segmentation"] and a["area"] > 0 for a in doc["annotations"])
        assert [i["id"] for i in instances["images"]] == list(range(1, len(instances["images"]) + 1))
        assert instances["images"] == keypoints["images"]  # one image id in every file
        assert not any("keypoints" in a for a in instances["annotations"])
        assert all("keypoints" in a for a in keypoints["annotations"])
        keys = {i["gtcoco_key"] for i in instances["images"]}
        assert not keys & seen_images  # an image is in one split only
        seen_images |= keys
        total["images"] += len(instances["images"])
        total["instances"] += len(instances["annotations"])
        total["keypoints"] += len(keypoints["annotations"])
        assert len(coco.getImgIds()) == len(instances["images"])
    # 48 camera jobs (a box and a polygon each), 3 face jobs, 1 raster pair (4 regions).
    assert total == {"images": CAMERAS * FRAMES + 4, "instances": 2 * CAMERAS * FRAMES + 4,
                     "keypoints": 3}
    manifest = read(dataset / "dataset.json")
    assert {s: manifest["splits"][s]["images"] for s in SPLITS} == {
        s: len(read(dataset / "annotations" / f"instances_{s}.json")["images"]) for s in SPLITS}


def test_every_file_lists_the_full_category_list_with_the_registry_ids(
    converted: Path, dataset: Path
) -> None:
    registry = {c["name"]: c["id"] for c in read(converted / "_registry" / "categories.json")[
        "categories"]}
    assert set(registry) == {"car", "person", "face", "sky"}
    for split in SPLITS:
        for kind in ("instances", "keypoints", "panoptic"):
            cats = read(dataset / "annotations" / f"{kind}_{split}.json")["categories"]
            assert {c["name"]: c["id"] for c in cats} == registry, (kind, split)
            if kind == "keypoints":  # Datumaro's importer wants `keypoints` on every category
                assert all("keypoints" in c and "skeleton" in c for c in cats)


def test_file_names_are_unique_relative_and_keep_the_cameras_apart(dataset: Path) -> None:
    names: list[str] = []
    for split in SPLITS:
        names += [i["file_name"] for i in read(
            dataset / "annotations" / f"instances_{split}.json")["images"]]
    assert len({stem_of(n) for n in names}) == len(names)
    assert all(not n.startswith("/") and ".." not in n.split("/") for n in names)
    assert "cdn.example.com/run1/cam3/000007.jpg" in names
    assert "scene_01.png" in names  # a raster pair: from its key, with an extension


def test_keypoints_have_one_length_per_category_and_a_box_with_an_area(dataset: Path) -> None:
    anns, cats = [], {}
    for split in SPLITS:
        doc = read(dataset / "annotations" / f"keypoints_{split}.json")
        anns += doc["annotations"]
        cats = {c["id"]: c for c in doc["categories"]}
    face = next(c for c in cats.values() if c["name"] == "face")
    assert face["keypoints"] == ["1", "2", "3", "4", "5"] and [1, 2] in face["skeleton"]
    for ann in anns:
        assert len(ann["keypoints"]) == 3 * len(face["keypoints"])
        assert ann["num_keypoints"] == sum(1 for v in ann["keypoints"][2::3] if v > 0)
        assert ann["bbox"][2] >= 1 and ann["bbox"][3] >= 1 and ann["area"] > 0
    assert sorted(a["num_keypoints"] for a in anns) == [1, 3, 5]


def test_instances_evaluate_against_themselves(dataset: Path) -> None:
    """bbox and segm evaluation run on the instances file (box-only shapes included) and
    match every annotation."""
    for split in SPLITS:
        truth = load_coco(read(dataset / "annotations" / f"instances_{split}.json"))
        results = [{"image_id": a["image_id"], "category_id": a["category_id"],
                    "bbox": a["bbox"], "segmentation": a["segmentation"], "score": 1.0}
                   for a in truth.dataset["annotations"]]
        for kind in ("bbox", "segm"):
            with contextlib.redirect_stdout(io.StringIO()):
                run_ = COCOeval(truth, truth.loadRes(copy.deepcopy(results)), kind)
                run_.evaluate()
                run_.accumulate()
                run_.summarize()
            assert run_.stats[0] == pytest.approx(1.0), (split, kind)


def test_panoptic_pngs_encode_the_segments_and_stuff_is_one_segment(dataset: Path) -> None:
    found = []
    for split in SPLITS:
        doc = read(dataset / "annotations" / f"panoptic_{split}.json")
        cats = {c["id"]: c for c in doc["categories"]}
        for entry in doc["annotations"]:
            png = dataset / "annotations" / f"panoptic_{split}" / entry["file_name"]
            decoded = cv2.imread(str(png), cv2.IMREAD_COLOR)
            assert decoded is not None
            rgb = decoded[..., ::-1].astype(np.int64)
            ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
            values, counts = np.unique(ids, return_counts=True)
            pixels = dict(zip(values.tolist(), counts.tolist(), strict=True))
            segments = {s["id"]: s for s in entry["segments_info"]}
            assert set(pixels) - {0} == set(segments)
            for sid, segment in segments.items():
                assert segment["area"] == pixels[sid]
            names = sorted(cats[s["category_id"]]["name"] for s in segments.values())
            assert names == ["car", "car", "sky"]  # the two sky colours: one stuff segment
            assert pixels[0] == 40 * 60 - 60 * 10 - 30 * 6 - 10 * 10 - 12 * 20  # void
            found.append(entry)
        by_name = {c["name"]: c["isthing"] for c in doc["categories"]}
        assert by_name == {"car": 1, "person": 1, "face": 1, "sky": 0}
        image_ids = {i["id"] for i in doc["images"]}
        assert {e["image_id"] for e in doc["annotations"]} == image_ids
    assert len(found) == 1


def test_reruns_are_byte_identical_and_new_exports_move_no_image(
    converted: Path, dataset: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    assert run("assemble", str(converted), "--out", str(again), "--name", "cams",
               "--split", "train=0.6", "--split", "val=0.4")[0] == 0
    for path in sorted((dataset / "annotations").rglob("*")):
        if path.is_file():
            rel = path.relative_to(dataset)
            assert path.read_bytes() == (again / rel).read_bytes(), rel
    # More exports arrive: every image already in the dataset keeps its split.
    more = tmp_path / "more"
    more.mkdir()
    (more / "cams_2.json").write_text(json.dumps(camera_batch(first=100)))
    out = tmp_path / "out2"
    assert run("convert", str(more), "--out", str(out), "-q")[0] == 0
    bigger = tmp_path / "bigger"
    assert run("assemble", str(converted), str(out), "--out", str(bigger),
               "--split", "train=0.6", "--split", "val=0.4")[0] == 0

    def splits_of(root: Path) -> dict[str, str]:
        return {i["gtcoco_key"]: split for split in SPLITS for i in read(
            root / "annotations" / f"instances_{split}.json")["images"]}

    before, after = splits_of(dataset), splits_of(bigger)
    assert len(after) == len(before) + CAMERAS * FRAMES
    assert all(after[k] == s for k, s in before.items())


def test_attributes_keep_names_and_values_and_spare_reader_fields(dataset: Path) -> None:
    doc = read(dataset / "annotations" / "instances_train.json")
    box = next(a for a in doc["annotations"] if a.get("box_only"))
    assert box["attributes"] == {"make": "vw"}
    assert box["reserved_attributes"] == {"confidence": "0.9"}


def test_dataset_json_comes_last_and_says_what_is_inside(converted: Path) -> None:
    out = MemoryStore("ds")
    order: list[str] = []
    original = out.write

    def recording(name: str, data: bytes, content_type: str, *args: Any, **kwargs: Any) -> int:
        order.append(name)
        return original(name, data, content_type, *args, **kwargs)

    out.write = recording  # type: ignore[method-assign]
    assembler = build_assembler(Config(), out)
    result = assembler.run([Source(str(converted), LocalStore(converted))],
                           (("train", 0.5), ("val", 0.5)), "none", "cams")
    assert order[-1] == "dataset.json" and order.count("dataset.json") == 1
    scene = split_of("scene_01", (("train", 0.5), ("val", 0.5)))
    assert order[:-1] == [f"annotations/panoptic_{scene}/scene_01.png"] + [
        f"annotations/{kind}_{split}.json" for split in ("train", "val")
        for kind in ("extras", "instances", "keypoints", "panoptic")
    ]
    doc = result.dataset
    assert doc["categories"] == 4 and doc["failed_jobs"] == 0
    assert doc["sources"] == [{"uri": str(converted), "jobs": CAMERAS * FRAMES + 4}]
    assert {i["name"] for i in doc["inputs"]} == {
        "cams.json", "face_one.json", "face_five.json", "face_line.json", "scene_01.json",
        "scene_01.png"}
    assert doc["converter"]["name"] == "gtcoco" and doc["split_rule"]["splits"] == {
        "train": 0.5, "val": 0.5}


def test_images_are_copied_through_the_guard_and_failures_are_reported(
    converted: Path, tmp_path: Path
) -> None:
    routes = {f"/run1/cam{c}/{i:06d}.jpg": (200, {"Content-Type": "image/jpeg"},
                                            b"\xff\xd8jpeg %d %d" % (c, i))
              for c in range(CAMERAS) for i in range(FRAMES)}
    with CountingServer(routes=routes) as cdn:
        config = Config()
        policy = fetch_policy(config, trusted_networks=(ipaddress.ip_network("127.0.0.1/32"),))

        def resolve(host: str, port: int) -> list[str]:
            # The CDN resolves to the local server; the faces host to the metadata address,
            # which the guard refuses whatever resolves to it.
            return ["169.254.169.254"] if "faces" in host else ["127.0.0.1"]

        out = LocalStore(tmp_path / "ds")
        assembler = build_assembler(config, out, policy=policy, resolver=resolve)
        source = tmp_path / "src"
        # The outputs, with their image URLs pointed at the local server.
        for path in converted.rglob("*"):
            if path.is_file():
                target = source / path.relative_to(converted)
                target.parent.mkdir(parents=True, exist_ok=True)
                text = path.read_bytes()
                if path.name == "coco.json":
                    text = text.replace(b"http://cdn.example.com/faces",
                                        b"http://faces.example.com:%d" % cdn.port)
                    text = text.replace(b"http://cdn.example.com", b"http://cdn.example.com:%d"
                                        % cdn.port)
                target.write_bytes(text)
        result = assembler.run([Source(str(source), LocalStore(source))],
                               (("train", 0.5), ("val", 0.5)), "copy", "cams")
    copied = sorted(p for p in (tmp_path / "ds" / "images").rglob("*") if p.is_file())
    assert len(copied) == CAMERAS * FRAMES and sorted(cdn.hits) == sorted(routes)
    assert {p.read_bytes() for p in copied} == {body for _, _, body in routes.values()}
    refused = result.copy_failures
    assert len(refused) == 3 and all("faces.example.com" in f["url"] for f in refused)
    for split in ("train", "val"):
        for image_doc in read(tmp_path / "ds" / "annotations" / f"instances_{split}.json")[
                "images"]:
            target = tmp_path / "ds" / "images" / split / image_doc["file_name"]
            assert target.exists() == ("faces" not in image_doc["file_name"]
                                       and image_doc["image_url"] is not None)
    assert result.dataset["images"]["copied"] == CAMERAS * FRAMES
    assert len(result.dataset["images"]["failed"]) == 3


@pytest.mark.parametrize("argv", [
    ["assemble", "/does/not/exist", "--out", "/tmp/x"],
    ["assemble", ".", "--out", "/tmp/x", "--split", "train=0.5"],
    ["assemble", ".", "--out", "/tmp/x", "--images", "maybe"],
])
def test_assemble_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(*argv)[0] == 2


def test_preview_draws_every_image_with_its_annotations(dataset: Path, tmp_path: Path) -> None:
    from shared.raster.draw import colour_of

    code, out, _ = run("preview", str(dataset), "--out", str(tmp_path / "pv"), "--limit", "1000")
    assert code == 0, out
    drawn = sorted((tmp_path / "pv").rglob("*.png"))
    images = {s: read(dataset / "annotations" / f"instances_{s}.json") for s in SPLITS}
    assert len(drawn) == sum(len(d["images"]) for d in images.values())
    for split, doc in images.items():
        for image in doc["images"]:
            if image["file_name"] != "scene_01.png":
                continue
            picture = cv2.imread(str(tmp_path / "pv" / split / "scene_01.png.png"))
            assert picture is not None and picture.shape[:2] == (40, 60)
            cars = [a for a in doc["annotations"] if a["image_id"] == image["id"]
                    and a["bbox"] == [5.0, 20.0, 10.0, 10.0]]
            (car,) = cars
            # The region is filled with its category's colour, its box edge drawn in it.
            assert tuple(picture[25, 10]) != (96, 96, 96)
            assert tuple(int(v) for v in picture[29, 5]) == colour_of(car["category_id"])
        for image in doc["images"]:
            if image["file_name"] == "cdn.example.com/run1/cam0/000003.jpg":
                # The lane (a line, from extras) is drawn along its points.
                picture = cv2.imread(str(tmp_path / "pv" / split / (image["file_name"] + ".png")))
                assert picture is not None and tuple(picture[360, 160]) != (96, 96, 96)
    assert run("preview", str(tmp_path), "--out", str(tmp_path / "x"))[0] == 2


def test_lines_and_cuboids_are_carried_by_image_id_not_dropped(dataset: Path) -> None:
    total = 0
    for split in SPLITS:
        extras = read(dataset / "annotations" / f"extras_{split}.json")["extras"]
        images = {i["id"]: i for i in read(dataset / "annotations" / f"instances_{split}.json")[
            "images"]}
        for entry in extras:
            assert entry["type"] == "line" and entry["label"] == "lane"
            image = images[entry["image_id"]]
            assert entry["key"] == image["gtcoco_key"]
            assert entry["points"] == [[0.0, 480.0], [320.0, 240.0]]
        total += len(extras)
        assert read(dataset / "dataset.json")["splits"][split]["extras"] == len(extras)
    assert total == CAMERAS * FRAMES


@pytest.mark.parametrize("shard_jobs", [1, 7, 10_000])
def test_a_sharded_assembly_is_the_single_run_byte_for_byte(
    converted: Path, dataset: Path, tmp_path: Path, shard_jobs: int
) -> None:
    sharded = tmp_path / "cams"
    code, out, err = run("assemble", str(converted), "--out", str(sharded), "--split",
                         "train=0.6", "--split", "val=0.4", "--shard-jobs", str(shard_jobs))
    assert code == 0, out + err
    expected = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file())
    got = sorted(p.relative_to(sharded) for p in sharded.rglob("*") if p.is_file())
    assert got == expected  # and no part or plan is left behind
    for rel in expected:
        assert (sharded / rel).read_bytes() == (dataset / rel).read_bytes(), rel


def test_a_plan_is_named_by_what_it_covers(converted: Path, tmp_path: Path) -> None:
    assembler = build_assembler(Config(), LocalStore(tmp_path / "ds"))
    sources = [Source(str(converted), LocalStore(converted))]
    request = request_of(sources, (("train", 1.0),), "none", "ds")
    first = plan(assembler, assembler.listing(sources), request, 10)
    assert plan(assembler, assembler.listing(sources), request, 10).id == first.id
    other = plan(assembler, assembler.listing(sources), {**request, "name": "other"}, 10)
    assert other.id != first.id
    assert first.shards == -(-first.total // 10) and first.total > 10
    # A new plan removes the files of the one before it.
    left = LocalStore(tmp_path / "ds").list("_parts/")
    assert left and all(n.startswith(f"_parts/{other.id}/") or n == "_parts/plan.json"
                        for n in left)
