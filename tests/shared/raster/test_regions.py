"""Raster segmentation: every output agrees with the pixels of the mask."""

from __future__ import annotations

import io
import ipaddress
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from shared.app.pipeline import Outcome, SourceRef
from shared.app.runtime import build_pipeline
from shared.app.stages import Converter
from shared.config import Config, Limits, Options
from shared.errors import ConversionError
from shared.gtstudio.legend import parse_legend
from shared.io.fetch import Fetcher, FetchPolicy, UrlReader
from shared.io.registry import CategoryRegistry
from shared.io.storage import MemoryStore
from shared.jsonio import dump_json
from shared.raster.regions import UNLABELED, LegendRow, color_key, decode_mask, legend_json
from tests.cocoutil import decode, load_coco
from tests.httpserver import Answer, CountingServer
from tests.masks import encode_png, legend_for, paint, palette
from tests.shared.raster.test_pngwrite import strict_bitmask

W, H = 320, 240
COLORS = palette(40)
ABSENT = 0xABCDEF  # in the legend, not in the mask
Converted = tuple[str, MemoryStore, dict[str, Any]]  # mode, output store, coco.json


def convert_pair(png: bytes, legend: dict[str, Any], options: Options = Options(),
                 limits: Limits = Limits()) -> tuple[MemoryStore, Outcome]:
    src, out = MemoryStore("in"), MemoryStore("out")
    src.write("seg/a.png", png, "image/png", metadata={})
    src.write("seg/a.json", json.dumps(legend).encode(), "application/json", metadata={})
    pipeline = build_pipeline(Config(options=options, limits=limits), src, out, open_bucket=False)
    outcome = pipeline.process(SourceRef("in", "seg/a.json"))
    return out, outcome


@pytest.fixture(scope="module")
def rgba() -> np.ndarray:
    return paint(W, H, COLORS, seed=3)


@pytest.fixture(scope="module", params=["auto", "rle", "polygon"])
def converted(request: pytest.FixtureRequest, rgba: np.ndarray) -> Converted:
    legend = legend_for(COLORS) | {f"#{ABSENT:06x}": "car # 999"}
    out, outcome = convert_pair(encode_png(rgba), legend,
                                Options(raster_segmentation=request.param))
    assert outcome.status == "converted", outcome.reason
    return request.param, out, json.loads(out.read("seg/a.json@/coco.json"))


def rgb_values(packed: np.ndarray) -> np.ndarray:
    """A decoded mask's values as 0xRRGGBB (UNLABELED kept): packed values hold a pixel's
    bytes in reverse order."""
    rgb = ((packed & 0xFF) << 16) | (packed & 0xFF00) | ((packed >> 16) & 0xFF)
    return np.where(packed == UNLABELED, UNLABELED, rgb)


def packed_of(rgba: np.ndarray) -> np.ndarray:
    return rgb_values(decode_mask(encode_png(rgba), 10**9).packed)


def png(out: MemoryStore, name: str) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(out.read(name), np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"{name} does not decode"
    return image


def test_each_colour_png_is_exactly_mask_equals_colour(converted: Converted, rgba: np.ndarray) -> None:
    _, out, _ = converted
    packed = packed_of(rgba)
    legend = json.loads(out.read("seg/a.json@/masks/legend.json"))
    written = 0
    for entry in legend["entries"]:
        rgb = int(entry["color"][1:], 16)
        if entry["pixels"] == 0:
            assert entry["mask"] is None and not (packed == rgb).any()
            continue
        image = png(out, f"seg/a.json@/masks/{entry['mask']}")
        assert image.shape == (H, W) and set(np.unique(image)) <= {0, 255}
        assert np.array_equal(image == 255, packed == rgb)
        strict = strict_bitmask(out.read(f"seg/a.json@/masks/{entry['mask']}"))
        assert np.array_equal(strict, packed == rgb)
        assert entry["pixels"] == int((packed == rgb).sum())
        written += 1
    assert written == len(out.list("seg/a.json@/masks/colors/"))


@pytest.mark.parametrize("width", [37, 40, 8, 1])
def test_colour_pngs_of_regions_at_the_frame_edges(width: int) -> None:
    """Boxes are widened to whole bytes; at a right edge that is not byte-aligned they
    cannot be, and each row is packed on its own."""
    colours = palette(4, seed=11)
    rgb = np.zeros((9, width, 3), np.uint8)
    for row in range(9):
        split = (row * 5) % (width + 1)
        rgb[row, :split] = list(colours[row % 2].to_bytes(3, "big"))
        rgb[row, split:] = list(colours[2 + row % 2].to_bytes(3, "big"))
    rgba = np.dstack([rgb[..., ::-1], np.full((9, width), 255, np.uint8)])
    out, outcome = convert_pair(encode_png(rgba), legend_for(colours))
    assert outcome.status == "converted", outcome.reason
    packed = packed_of(rgba)
    written = 0
    for entry in json.loads(out.read("seg/a.json@/masks/legend.json"))["entries"]:
        if entry["mask"] is not None:
            strict = strict_bitmask(out.read(f"seg/a.json@/masks/{entry['mask']}"))
            assert np.array_equal(strict, packed == int(entry["color"][1:], 16))
            written += 1
    assert written == (4 if width > 1 else 2)


def test_index_masks_agree_with_coco(converted: Converted, rgba: np.ndarray) -> None:
    mode, out, doc = converted
    coco = load_coco(doc)
    semantic, instances = png(out, "seg/a.json@/masks/semantic.png"), png(out, "seg/a.json@/masks/instances.png")
    assert instances.dtype == np.uint16 and semantic.shape == (H, W)
    packed = packed_of(rgba)
    for ann in doc["annotations"]:
        pixels = instances == ann["id"]
        assert np.array_equal(pixels, packed == int(ann["color"][1:], 16))
        assert (semantic[pixels] == ann["category_id"]).all()
        drawn = decode(coco, ann)
        # RLE is exact, holes included; so is every polygon of auto mode (outlines of
        # one component without holes).
        if isinstance(ann["segmentation"], dict) or mode == "auto":
            assert np.array_equal(drawn, pixels)
            assert ann["area"] == int(pixels.sum())
        else:
            iou = (drawn & pixels).sum() / (drawn | pixels).sum()
            assert iou >= 0.95
    assert ((semantic == 0) == (instances == 0)).all()
    kinds = {type(a["segmentation"]).__name__ for a in doc["annotations"]}
    assert kinds == ({"dict"} if mode == "rle" else {"dict", "list"})


def test_holes_are_kept_in_rle(rgba: np.ndarray) -> None:
    out, _ = convert_pair(encode_png(rgba), legend_for(COLORS))
    doc = json.loads(out.read("seg/a.json@/coco.json"))
    holed = [a for a in doc["annotations"] if isinstance(a["segmentation"], dict)
             and a["area"] < a["bbox"][2] * a["bbox"][3] * 0.7]
    assert holed, "the test mask has instances with holes"
    coco = load_coco(doc)
    instances = png(out, "seg/a.json@/masks/instances.png")
    for ann in holed:
        assert np.array_equal(decode(coco, ann), instances == ann["id"])


def test_report_and_legend_account_for_every_pixel(converted: Converted, rgba: np.ndarray) -> None:
    mode, out, doc = converted
    report = json.loads(out.read("seg/a.json@/report.json"))
    stats = report["raster"]
    assert stats["regions"] == len(doc["annotations"])
    if mode != "rle":
        assert 0.95 <= stats["polygon_iou_min"] <= stats["polygon_iou_mean"] <= 1
    legend = json.loads(out.read("seg/a.json@/masks/legend.json"))
    colors = [e["color"] for e in legend["entries"]]
    assert len(colors) == len(set(colors)) == len(COLORS) + 1
    assert f"#{ABSENT:06x}" in colors
    packed = packed_of(rgba)
    assert legend["unknown_colors"] == [
        {"color": "#000000", "pixels": int((packed == 0).sum())},
        {"color": "#123456", "pixels": int((packed == 0x123456).sum())},
    ]
    labeled = sum(e["pixels"] for e in legend["entries"])
    assert legend["unlabeled_pixels"] == W * H - labeled
    assert stats["transparent_pixels"] == int((packed == UNLABELED).sum()) > 0


SHAPES = {  # colour: (what it is, what auto mode must emit)
    0x00FF00: ("rectangle, one run per row", "list"),
    0x0000FF: ("U shape: one component, several runs in some rows", "list"),
    0xFF0000: ("ring: a hole", "dict"),
    0xFFFF00: ("two separate blobs", "dict"),
    0xFF00FF: ("two blobs touching at a corner: one 8-connected component", "list"),
}


def _shapes() -> np.ndarray:
    bgr = np.zeros((24, 32, 3), np.uint8)

    def put(color: int, rows: slice, cols: slice) -> None:
        bgr[rows, cols] = (color & 0xFF, (color >> 8) & 0xFF, color >> 16)

    put(0x00FF00, slice(1, 5), slice(1, 9))
    put(0x0000FF, slice(8, 16), slice(1, 10))
    bgr[8:13, 4:7] = 0  # the U's gap
    put(0xFF0000, slice(1, 9), slice(12, 20))
    bgr[3:6, 14:17] = 0  # the ring's hole
    put(0xFFFF00, slice(12, 15), slice(13, 16))
    put(0xFFFF00, slice(18, 21), slice(13, 16))
    put(0xFF00FF, slice(2, 5), slice(23, 26))
    put(0xFF00FF, slice(5, 8), slice(26, 29))
    return bgr


def test_auto_mode_emits_exact_polygons_for_one_component_without_holes() -> None:
    bgr = _shapes()
    ok, png_data = cv2.imencode(".png", bgr)
    assert ok
    legend = {f"#{c:06x}": f"thing # {i}" for i, c in enumerate(SHAPES, start=1)}
    out, outcome = convert_pair(png_data.tobytes(), legend)
    assert outcome.status == "converted", outcome.reason
    doc = json.loads(out.read("seg/a.json@/coco.json"))
    coco = load_coco(doc)
    packed = rgb_values(decode_mask(png_data.tobytes(), 10**6).packed)
    for ann in doc["annotations"]:
        color = int(ann["color"][1:], 16)
        what, kind = SHAPES[color]
        assert type(ann["segmentation"]).__name__ == kind, what
        assert np.array_equal(decode(coco, ann), packed == color), what
        assert ann["area"] == int((packed == color).sum()), what
    stats = json.loads(out.read("seg/a.json@/report.json"))["raster"]
    assert (stats["polygons"], stats["rle"]) == (3, 2)
    assert stats["polygon_iou_min"] == stats["polygon_iou_mean"] == 1.0


@pytest.mark.parametrize(("legend", "expected"), [
    ({"#00FF00": "car # 3"}, [("car", 3)]),
    ({"00ff00": "Car #5"}, [("Car", 5)]),
    ({"rgb(0, 255, 0)": "road"}, [("road", None)]),
    ({"#00ff00": {"value": "car # 1"}, "#0000ff": {"text": "road"}},
     [("road", None), ("car", 1)]),
    ({"#00ff00": "car", "#0000ff": "car # 2"}, [("car", 2), ("car", None)]),
])
def test_legend_variations(legend: Any, expected: Any) -> None:
    entries, notes = parse_legend(legend, None, "")
    assert [(e.label, e.instance) for e in entries] == expected
    assert notes == []


def test_malformed_legend_keys_are_reported_and_instances_preferred() -> None:
    entries, notes = parse_legend({"#00ff001": "car", "#0000ff": "car #1", "#ff0000": None},
                                  [{"color": "#0000ff", "value": "truck #7", "_id": "i7"}], "/r")
    assert [(e.label, e.instance, e.gt_id) for e in entries] == [("truck", 7, "i7")]
    assert sorted(n.reason for n in notes) == ["malformed_color", "malformed_label"]
    assert notes[0].pointer.startswith("/r/legend/")


def _png_bytes(array: np.ndarray, mode: str) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(array)
    if mode == "P":
        image = image.convert("RGB").quantize(colors=4)
    elif mode != image.mode:
        image = image.convert(mode)
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "L", "P"])
def test_mask_modes_decode_to_the_same_colours(mode: str) -> None:
    grey = np.zeros((8, 8, 3), np.uint8)
    grey[:4] = 200
    grey[4:, :4] = 100
    packed = rgb_values(decode_mask(_png_bytes(grey, mode), 10**6).packed)
    assert set(np.unique(packed).tolist()) == {0, 0x646464, 0xC8C8C8}
    assert (packed[:4] == 0xC8C8C8).all()


def test_alpha_zero_is_unlabeled() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 1] = 255  # green everywhere
    rgba[:2, ..., 3] = 255  # but only the top half is opaque
    out, outcome = convert_pair(_png_bytes(rgba, "RGBA"), {"#00ff00": "grass"})
    legend = json.loads(out.read("seg/a.json@/masks/legend.json"))
    assert legend["entries"][0]["pixels"] == 8 and legend["unlabeled_pixels"] == 8


def test_mask_size_differing_from_the_image_is_reported() -> None:
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[:, 10:] = (0, 255, 0, 255)
    out, outcome = convert_pair(_png_bytes(rgba, "RGBA"),
                                {"legend": {"#00ff00": "grass"}, "width": 40, "height": 20})
    report = json.loads(out.read("seg/a.json@/report.json"))
    assert "mask_size_differs" in [n["reason"] for n in report["notes"]]
    assert report["image"] == {"width": 40, "height": 20, "size_source": "explicit"}
    assert png(out, "seg/a.json@/masks/instances.png").shape == (20, 40)


@pytest.mark.parametrize(("mask", "legend"), [("p/m.png", "p/m.json"),
                                              ("p/url.png", "p/legend.json")],
                         ids=["same-key", "guide-file-names"])
def test_raster_pair_converts_once_whichever_half_arrives_last(mask: str, legend: str) -> None:
    """Pairs share a key, or have the names the guide's raster export gives them."""
    src, out = MemoryStore("in"), MemoryStore("out")
    pipeline = build_pipeline(Config(), src, out, open_bucket=False)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[...] = (0, 255, 0, 255)
    src.write(mask, _png_bytes(rgba, "RGBA"), "image/png", metadata={})
    first = pipeline.process(SourceRef("in", mask, 1))
    assert first.status == "waiting" and not out.list("p/")
    gen = src.write(legend, b'{"#00ff00": "grass"}', "application/json", metadata={})
    second = pipeline.process(SourceRef("in", legend, gen))
    assert second.status == "converted"
    assert second.prefix == legend + "@"
    png_info = src.stat(mask)
    assert png_info is not None
    again = pipeline.process(SourceRef("in", mask, png_info.generation))
    assert again.status == "duplicate"

ERRORS = [
    ({"image_url": "u", "maker_response": {"raster": {"data": {"url": "m.png"}}}},
     "missing_legend", "/maker_response/raster/data/legend"),
    ({"url": "m.png", "legend": ["#00ff00"]}, "invalid_legend", "/legend"),
    ({"url": "{base}/not-png", "legend": {"#00ff00": "car"}}, "invalid_mask", ""),
    ({"url": "{base}/huge.png", "legend": {"#00ff00": "car"}}, "mask_too_large", ""),
    ({"url": "{base}/missing.png", "legend": {"#00ff00": "car"}}, "url_unreachable", "/url"),
    ({"url": "http://169.254.169.254/m.png", "legend": {"#00ff00": "car"}}, "url_refused",
     "/url"),
]


@pytest.mark.parametrize(("doc", "code", "pointer"), ERRORS, ids=[e[1] for e in ERRORS])
def test_segmentation_errors(doc: dict[str, Any], code: str, pointer: str) -> None:
    huge = _png_bytes(np.zeros((300, 400, 3), np.uint8), "RGB")
    routes: dict[str, Answer | Callable[[], Answer]] = {"/not-png": (200, {}, b"GIF89a...."), "/huge.png": (200, {}, huge)}
    with CountingServer(routes=routes) as server:
        policy = FetchPolicy(schemes=frozenset({"http", "https"}),
                             trusted_networks=(ipaddress.ip_network("127.0.0.1/32"),))
        limits = replace(Limits(), max_mask_pixels=100_000)
        converter = Converter(Config(limits=limits), UrlReader(Fetcher(policy)),
                              CategoryRegistry(MemoryStore()))
        text = json.dumps(doc).replace("{base}", server.url("").rstrip("/"))
        (parsed,) = converter.parse(json.loads(text))
        with pytest.raises(ConversionError) as info:
            if parsed.error:
                raise parsed.error
            assert parsed.job is not None
            converter.convert(parsed.job, "k")
    assert info.value.code == code
    assert info.value.pointer == pointer


def test_without_files_the_coco_is_the_same_and_no_png_is_encoded(
    converted: Converted, rgba: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP `/convert` answers with the COCO alone: it must not pay for the mask files."""
    from shared.app.convert import Inputs, convert_job
    from shared.gtstudio.jobs import parse_job
    from shared.raster import pngwrite, regions

    mode, _, coco = converted
    legend = legend_for(COLORS) | {f"#{ABSENT:06x}": "car # 999"}
    job = parse_job({"url": "", "legend": legend}, "", Limits())
    ids = {c["name"]: c["id"] for c in coco["categories"]}

    def refuse(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("a PNG was encoded")

    monkeypatch.setattr(pngwrite, "_zlib_segment", refuse)
    monkeypatch.setattr(pngwrite, "_runs_segment", refuse)
    monkeypatch.setattr(regions, "encode_bitmasks", refuse)
    output = convert_job(job, "seg/a", Inputs(mask=encode_png(rgba), ids=ids),
                         Options(raster_segmentation=mode), Limits(), files=False)
    assert set(output.files) == {"coco.json"}
    assert output.coco == coco


_LABELS = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_ROWS = st.lists(
    st.tuples(
        st.integers(0, 0xFFFFFF).map(lambda c: f"{c:06x}"),
        _LABELS,
        st.none() | st.integers(0, 10**6),
        st.integers(1, 70000),
        st.none() | st.integers(1, 65535),
        st.integers(0, 10**8),
    ),
    max_size=8,
)


@given(
    rows=_ROWS,
    unknown=st.lists(
        st.fixed_dictionaries({"color": st.just("#010203"), "pixels": st.integers(1, 99)}),
        max_size=2,
    ),
)
def test_legend_json_is_the_canonical_dump(rows: list[LegendRow], unknown: list[Any]) -> None:
    """The hand-written legend.json is byte for byte what dump_json gives for its dict."""
    rows = [(*r[:5], 0) if r[4] is None else r for r in rows]
    doc = {
        "width": 640,
        "height": 480,
        "entries": [
            {
                "color": f"#{hx}",
                "label": label,
                "instance": instance,
                "category_id": category_id,
                "annotation_id": annotation_id,
                "pixels": pixels,
                "mask": None if annotation_id is None else f"colors/{hx}.png",
            }
            for hx, label, instance, category_id, annotation_id, pixels in rows
        ],
        "unlabeled_pixels": 640 * 480 - sum(r[5] for r in rows),
        "unknown_colors": unknown,
    }
    assert legend_json(640, 480, rows, unknown) == dump_json(doc)


@given(st.integers(0, 0xFFFFFF))
def test_color_key_reverses_the_bytes_both_ways(rgb: int) -> None:
    bgra = np.array([[[rgb & 0xFF, (rgb >> 8) & 0xFF, rgb >> 16, 255]]], dtype=np.uint8)
    assert decode_mask(encode_png(bgra), 1).packed[0, 0] == color_key(rgb)
    assert color_key(color_key(rgb)) == rgb
