"""Per-image COCO files -> one dataset: splits, file names, ids, keypoints and panoptic.

Pure: the assembler (`shared.app.assemble`) reads each converted job and hands its COCO and
legend here; what comes back is what it writes.  Nothing here depends on the order in which
jobs are seen except the ids, which follow the sources' sorted listing (the same on every
run over the same inputs).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from shared import RELEASE_YEAR, __version__
from shared.errors import BadRequest

DEFAULT_SPLITS = (("train", 0.9), ("val", 0.1))
_SPLIT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# A file name segment keeps these characters; anything else becomes `_`.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_FILE_NAME_CHARS = 512


def parse_splits(specs: Sequence[str]) -> tuple[tuple[str, float], ...]:
    """`NAME=FRACTION` specs -> ((name, fraction), ...); fractions must add up to 1."""
    if not specs:
        return DEFAULT_SPLITS
    out: list[tuple[str, float]] = []
    for spec in specs:
        name, sep, raw = spec.partition("=")
        if not sep or not _SPLIT_NAME.match(name):
            raise BadRequest(
                "invalid_split", f"--split {spec!r}: give NAME=FRACTION, NAME of [a-z0-9_-]"
            )
        try:
            fraction = float(raw)
        except ValueError:
            raise BadRequest("invalid_split", f"--split {spec!r}: not a number") from None
        if not 0 < fraction <= 1:
            raise BadRequest("invalid_split", f"--split {spec!r}: the fraction must be in (0, 1]")
        if name in {n for n, _ in out}:
            raise BadRequest("invalid_split", f"--split {name} given twice")
        out.append((name, fraction))
    total = sum(f for _, f in out)
    if abs(total - 1.0) > 1e-9:
        raise BadRequest("invalid_split", f"split fractions add up to {total:g}, not 1")
    return tuple(out)


def split_of(key: str, splits: Sequence[tuple[str, float]]) -> str:
    """The split of a job: a hash of its key, so a job never moves as exports arrive (and
    the frames of one video stay together)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, fraction in splits:
        edge += fraction
        if point < edge:
            return name
    return splits[-1][0]


def _safe_segments(path: str) -> list[str]:
    segments = []
    for raw in path.split("/"):
        segment = _UNSAFE.sub("_", raw).strip(".") or ""
        if segment:
            segments.append(segment)
    return segments


def image_path(image: Mapping[str, Any], key: str, frame: int | None) -> str:
    """Where an image sits under `images/<split>/`: its URL's host and path (the path alone
    is not enough: 4 cameras numbering frames alike share last segments), else the job's
    key; always with an image extension."""
    url = image.get("image_url")
    segments: list[str] = []
    try:
        parts = urlsplit(url) if isinstance(url, str) and url else None
    except ValueError:  # e.g. an unbalanced IPv6 bracket: named from the key instead
        parts = None
    if parts is not None:
        segments = _safe_segments(f"{parts.netloc}/{unquote(parts.path)}")
        if parts.query:
            digest = hashlib.sha256(parts.query.encode()).hexdigest()[:8]
            segments[-1:] = [f"{segments[-1] if segments else 'image'}~{digest}"]
    if not segments:
        segments = _safe_segments(key) or ["image"]
        if frame is not None:
            segments.append(f"frame-{frame:06d}")
    name = "/".join(segments)
    if not name.lower().endswith(_IMAGE_EXTENSIONS):
        name += ".png"  # a raster pair's image, or a URL without an extension
    if len(name) > MAX_FILE_NAME_CHARS:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        name = f"long/{digest}{posixpath.splitext(name)[1]}"
    return name


@dataclass
class FileNames:
    """Unique `file_name`s: a name already given (compared without case and extension, so
    that panoptic PNG names stay unique too) gets the image key's hash before its
    extension."""

    # 16-byte digests of the names given, not the names: a few dozen bytes an image.
    seen: set[bytes] = field(default_factory=set)

    def claim(self, name: str, key: str) -> str:
        stem, ext = posixpath.splitext(name)
        candidate, n = name, 0
        while key_digest(stem_of(candidate)) in self.seen:
            n += 1
            salt = f"{key}#{n}" if n > 1 else key
            candidate = f"{stem}~{hashlib.sha256(salt.encode()).hexdigest()[:8]}{ext}"
        self.seen.add(key_digest(stem_of(candidate)))
        return candidate


def key_digest(text: str) -> bytes:
    """128 bits of a name or key: sets of these stand for sets of the strings."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def stem_of(name: str) -> str:
    return posixpath.splitext(name)[0].lower()


def panoptic_name(file_name: str) -> str:
    return posixpath.splitext(file_name)[0] + ".png"


def info_block(name: str, split: str) -> dict[str, Any]:
    return {
        "description": f"{name} ({split}), assembled by gtcoco from GT Studio exports",
        "version": __version__,
        "contributor": "",
        "url": "",
        "year": RELEASE_YEAR,
        "date_created": "",
    }


# -- categories --------------------------------------------------------------------------


@dataclass
class Categories:
    """The full category list (the registry's ids) and what the dataset learned of each:
    keypoint names and skeleton, whether it ever has instances (panoptic `isthing`)."""

    names: dict[int, str]
    keypoints: dict[int, int] = field(default_factory=dict)  # id -> number of keypoints
    skeleton: dict[int, set[tuple[int, int]]] = field(default_factory=dict)
    things: set[int] = field(default_factory=set)

    @classmethod
    def from_registry(cls, doc: Mapping[str, Any]) -> Categories:
        names: dict[int, str] = {}
        for entry in doc.get("categories", []):
            names[int(entry["id"])] = str(entry["name"])
        return cls(names)

    def learn(self, coco: Mapping[str, Any]) -> None:
        """A job's categories: unknown ones join (a registry may be older than the job),
        an id naming another label is refused (the sources disagree on ids)."""
        for entry in coco.get("categories", []):
            cid, name = int(entry["id"]), str(entry["name"])
            known = self.names.setdefault(cid, name)
            if known != name:
                raise BadRequest(
                    "conflicting_categories",
                    f"category id {cid} is {known!r} in one source and {name!r} in another",
                )
            if "keypoints" in entry:
                self.keypoints[cid] = max(self.keypoints.get(cid, 0), len(entry["keypoints"]))
                self.skeleton.setdefault(cid, set()).update(
                    (int(a), int(b)) for a, b in entry.get("skeleton", [])
                )

    def instances_list(self) -> list[dict[str, Any]]:
        return [{"id": i, "name": n, "supercategory": ""} for i, n in sorted(self.names.items())]

    def keypoints_list(self) -> list[dict[str, Any]]:
        # Every category lists `keypoints` (Datumaro's person_keypoints importer requires it).
        return [
            {
                "id": i,
                "name": n,
                "supercategory": "",
                "keypoints": [str(k) for k in range(1, self.keypoints.get(i, 0) + 1)],
                "skeleton": [list(b) for b in sorted(self.skeleton.get(i, set()))],
            }
            for i, n in sorted(self.names.items())
        ]

    def panoptic_list(self) -> list[dict[str, Any]]:
        return [
            {
                "id": i,
                "name": n,
                "supercategory": "",
                "isthing": int(i in self.things),
                "color": _colour_of(i),
            }
            for i, n in sorted(self.names.items())
        ]


def _colour_of(category_id: int) -> list[int]:
    digest = hashlib.sha256(str(category_id).encode()).digest()
    return [digest[0], digest[1], digest[2]]


def is_keypoints(annotation: Mapping[str, Any]) -> bool:
    return "keypoints" in annotation


def padded_keypoints(annotation: dict[str, Any], total: int) -> dict[str, Any]:
    """A landmark's keypoints padded to its category's count in the dataset (an image
    lists only as many as its own landmarks use)."""
    flat = list(annotation["keypoints"])
    flat += [0.0, 0.0, 0] * (total - len(flat) // 3)
    return {**annotation, "keypoints": flat}


def things_of(coco: Mapping[str, Any], legend: Mapping[str, Any] | None) -> set[int]:
    """Categories a job shows instances of: every vector shape is one, and so is a raster
    entry with an instance number; a bare class region is stuff."""
    raster = set()
    found = set()
    if legend is not None:
        for entry in legend.get("entries", []):
            if entry.get("annotation_id") is not None:
                raster.add(entry["annotation_id"])
                if entry.get("instance") is not None:
                    found.add(int(entry["category_id"]))
    for ann in coco.get("annotations", []):
        if ann["id"] not in raster:
            found.add(int(ann["category_id"]))
    return found


# -- panoptic -----------------------------------------------------------------------------


def panoptic_segments(
    instances: np.ndarray,
    legend: Mapping[str, Any],
    boxes: Mapping[int, Sequence[float]],
    things: set[int],
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A job's 16-bit instance mask (pixel = its annotation id), legend and its annotations'
    boxes -> the RGB panoptic PNG's pixels and `segments_info`.  The regions of one stuff
    class are merged into one segment, as COCO panoptic wants; unknown colours and unlabeled
    pixels are void (0).  Segment ids are the job's annotation ids; the PNG encodes
    id = R + 256 G + 256^2 B."""
    lut = np.zeros(int(instances.max(initial=0)) + 1, np.uint32)
    merged: dict[int, dict[str, Any]] = {}
    for entry in sorted(
        (e for e in legend.get("entries", []) if e.get("annotation_id") is not None),
        key=lambda e: int(e["annotation_id"]),
    ):
        aid, cid, pixels = int(entry["annotation_id"]), int(entry["category_id"]), entry["pixels"]
        if aid >= len(lut) or not pixels or aid not in boxes:
            continue  # a region without pixels in the mask
        first = merged.get(aid) if cid in things else merged.get(-cid)
        lut[aid] = aid if first is None else first["id"]
        if first is None:
            segment = {
                "id": aid,
                "category_id": cid,
                "iscrowd": 0,
                "bbox": list(boxes[aid]),
                "area": int(pixels),
            }
            merged[aid if cid in things else -cid] = segment
            continue
        first["area"] += int(pixels)
        first["bbox"] = _union(first["bbox"], boxes[aid])
    ids = lut[instances]
    rgb = np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)
    return rgb, sorted(merged.values(), key=lambda s: int(s["id"]))


def _union(a: Sequence[float], b: Sequence[float]) -> list[float]:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return [x0, y0, x1 - x0, y1 - y0]


# -- renumbering --------------------------------------------------------------------------


def renumbered(annotation: Mapping[str, Any], image_id: int, annotation_id: int) -> dict[str, Any]:
    return {**annotation, "id": annotation_id, "image_id": image_id}


def dataset_image(
    image: Mapping[str, Any], image_id: int, file_name: str, key: str
) -> dict[str, Any]:
    out = {k: v for k, v in image.items() if k not in {"id", "file_name"}}
    return {**out, "id": image_id, "file_name": file_name, "gtcoco_key": key}


def count_by_category(annotations: Iterable[Mapping[str, Any]]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for ann in annotations:
        counts[int(ann["category_id"])] = counts.get(int(ann["category_id"]), 0) + 1
    return counts
