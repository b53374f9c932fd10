"""Example exports for the demo, made here so the repository ships no binary images."""

from __future__ import annotations

import json

import cv2
import numpy as np

IN = "demo-exports"


def _image(width: int, height: int, ext: str,
           objects: tuple[tuple[float, float, float, float, tuple[int, int, int]], ...] = ()) -> bytes:
    """A road scene with `objects` painted where the export annotates them (normalised
    x0, y0, x1, y1 and a BGR colour), so a preview's drawings land on them."""
    image = np.full((height, width, 3), 90, np.uint8)
    image[height // 2:] = (70, 70, 70)  # road
    for x0, y0, x1, y1, colour in objects:
        cv2.rectangle(image, (round(x0 * width), round(y0 * height)),
                      (round(x1 * width) - 1, round(y1 * height) - 1), colour, -1)
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return bytes(buf.tobytes())


# The street export's cars and sign, painted into its image.
STREET_OBJECTS = ((.55, .6, .7, .75, (40, 40, 200)), (.1, .65, .3, .8, (200, 120, 40)),
                  (.2, .2, .25, .3, (20, 200, 230)))


def example_objects() -> list[tuple[str, bytes, str]]:
    def pt(x: float, y: float) -> dict[str, float]:
        return {"x": x, "y": y}

    street = {  # vector job build, size read from the image header through the adapter
        "image_url": f"gs://{IN}/images/street.jpg", "reference_id": "street/0001",
        "maker_response": {
            "rectangles": {"data": [
                {"_id": "car-1", "label": "car", "coordinates": [pt(.55, .6), pt(.7, .6), pt(.7, .75), pt(.55, .75)],
                 "attributes": {"occluded": {"value": "no"}}},
                {"_id": "car-2", "label": "car", "coordinates": [pt(.3, .8), pt(.1, .8), pt(.1, .65), pt(.3, .65)]}]},
            "polygons": {"data": [{"_id": "road-1", "label": "road", "points": {
                "p1": pt(0, .5), "p2": pt(1, .5), "p3": pt(1, 1), "p4": pt(0, 1)},
                "edges": {"e1": ["p1", "p2"], "e2": ["p2", "p3"], "e3": ["p3", "p4"], "e4": ["p4", "p4"]}}]},
            "lines": {"data": [{"_id": "lane-1", "label": "lane", "points": {"p1": pt(.5, 1), "p2": pt(.5, .5)}}]},
            "landmarks": {"data": [{"_id": "sign-1", "label": "sign", "points": {
                "p1": {"x": .2, "y": .2, "label": 1}, "p2": {"x": .25, "y": .3, "label": 2}},
                "edges": {"e1": ["p1", "p2"]}}]},
            "cuboids": None}}
    # Segmentation: mask and legend; mask colours: red car, green grass, an unknown grey.
    mask = np.zeros((240, 320, 4), np.uint8)
    mask[..., 3] = 255
    mask[120:, :] = (0, 255, 0, 255)
    cv2.circle(mask, (100, 150), 30, (0, 0, 255, 255), -1)
    cv2.circle(mask, (100, 150), 10, (0, 255, 0, 255), -1)  # a hole
    cv2.rectangle(mask, (200, 140), (260, 200), (255, 0, 0, 255), -1)
    ok, png = cv2.imencode(".png", mask)
    assert ok
    parking = {"image_url": f"gs://{IN}/images/parking.png", "reference_id": "parking/7",
               "maker_response": {"raster": {"data": {
                   "url": f"gs://{IN}/masks/parking.png",
                   "legend": {"#FF0000": "car # 1", "0000ff": "Car #2", "#00ff00": "grass"}}}}}
    batch = "\n".join(json.dumps({"build": {"image_url": f"https://cdn.example.com/{i}.jpg",
                                            "width": 640, "height": 480, "maker_response": {
                                                "rectangles": {"data": [{"label": "car", "coordinates": [
                                                    pt(.1 * i, .1), pt(.1 * i + .2, .4)]}]}}},
                                  "meta": {"reference_id": f"batch-{i}"}}) for i in range(3))
    return [
        ("images/street.jpg", _image(640, 480, ".jpg", STREET_OBJECTS), "image/jpeg"),
        ("images/parking.png", _image(320, 240, ".png"), "image/png"),
        ("masks/parking.png", bytes(png.tobytes()), "image/png"),
        ("exports/street.json", json.dumps(street).encode(), "application/json"),
        ("exports/parking.json", json.dumps(parking).encode(), "application/json"),
        ("pairs/lot.png", bytes(png.tobytes()), "image/png"),
        ("pairs/lot.json", json.dumps({"#ff0000": "car # 1", "#00ff00": "grass"}).encode(),
         "application/json"),
        ("exports/batch.jsonl", batch.encode(), "application/x-ndjson"),
        ("exports/broken.json", b'{"image_url": "x", "maker_response": {"polygons": {"data": [{"label": 3', "application/json"),
    ]
