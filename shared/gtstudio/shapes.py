"""One annotation -> `Shape`: labels, attributes, coordinates, landmarks and edges, and the
scalar fields every part of an export shares (sizes, URLs, ids)."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from shared.config import Limits
from shared.errors import ConversionError, TooLargeError, pointer_join
from shared.geometry import chain_from_edges, natural_sorted, order_polygon
from shared.gtstudio.records import NO_POINTS, SHAPE_DEFAULTS, Note, Shape, as_coords
from shared.memo import short_key_cache

# maker_response / annotations type keys and the shape each holds.
SHAPE_TYPES = {
    "rectangles": "rectangle",
    "polygons": "polygon",
    "lines": "line",
    "landmarks": "landmark",
    "cuboids": "cuboid",
}
# Singular `type` values seen on typed annotation lists (video trackers, API results).
TYPE_ALIASES = {
    **{v: v for v in SHAPE_TYPES.values()},
    **SHAPE_TYPES,
    "rect": "rectangle",
    "bbox": "rectangle",
    "box": "rectangle",
    "polyline": "line",
    "point": "landmark",
    "points": "landmark",
    "cuboid3d": "cuboid",
}
# Keys in maker_response that are not annotation lists of their own.
CONTAINER_KEYS = {"raster", "video2d"}
# Keys of an annotation the parser reads.
SHAPE_KEYS = frozenset(
    {"label", "_id", "id", "attributes", "coordinates", "points", "edges", "type", "frames"}
)
# Keys real exports carry that COCO users want: annotation field names they become.
KEPT_KEYS = {"color": "gt_color", "label_id": "gt_label_id", "keyFrame": "key_frame"}
# UI and QC bookkeeping of GT Studio, ignored on purpose (README: "Keys").
IGNORED_KEYS = frozenset(
    {
        "state",
        "comments",
        "labelEditable",
        "shapeEditable",
        "annotationQcEvals",
        "annotationQCEvaluations",
        "source",
        "grouping_config",
        "meta_data",
    }
)
_RGB = re.compile(r"^\s*rgba?\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*(?:,[^)]*)?\)\s*$")
_HEX = re.compile(r"^\s*#?([0-9a-fA-F]{6})\s*$")


def kept_value(key: str, value: Any) -> Any:
    """A kept key's value as COCO users want it: colours as [r, g, b]."""
    if key == "color" and isinstance(value, str):
        if m := _RGB.match(value):
            rgb = [int(g) for g in m.groups()]
            if all(c <= 255 for c in rgb):
                return rgb
        if m := _HEX.match(value):
            return [int(m[1][i : i + 2], 16) for i in (0, 2, 4)]
    if key == "label_id" and isinstance(value, (int, str)) and not isinstance(value, bool):
        return str(value)
    if key == "keyFrame" and isinstance(value, bool):
        return value
    return value if isinstance(value, (str, int, float, bool)) or value is None else None


@short_key_cache(maxsize=1024)  # every annotation of a list has the same few keys
def _key_plan(keys: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(kept keys present, unknown keys sorted) of an annotation with these keys."""
    kept = tuple(k for k in keys if k in KEPT_KEYS)
    unknown = tuple(
        sorted(
            k for k in keys if k not in SHAPE_KEYS and k not in KEPT_KEYS and k not in IGNORED_KEYS
        )
    )
    return kept, unknown


def kept_and_unknown(item: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    kept_keys, unknown = _key_plan(tuple(item))
    if not kept_keys:
        return {}, unknown
    kept = {KEPT_KEYS[k]: kept_value(k, item[k]) for k in kept_keys}
    return {k: v for k, v in kept.items() if v is not None}, unknown


# Normalised coordinates slightly outside 0..1 are clipped; far outside is corrupt data.
COORD_MIN, COORD_MAX = -1.0, 2.0


def str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    return None


def dimension(doc: Mapping[str, Any], key: str, pointer: str) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    # An int is finite however long (math.isfinite would overflow on one past a float).
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise ConversionError(
            "invalid_type", f"{key} must be a positive integer", pointer_join(pointer, key)
        )
    if value <= 0 or value != int(value) or value > 1_000_000:
        raise ConversionError(
            "invalid_dimension",
            f"{key}={value} is not a usable image size",
            pointer_join(pointer, key),
        )
    return int(value)


def url_field(doc: Mapping[str, Any], key: str, pointer: str) -> str | None:
    value = doc.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConversionError("invalid_type", f"{key} must be a string", pointer_join(pointer, key))
    return value


# ---------------------------------------------------------------------------------------
# Single annotations


def shape_fields(
    kind: str, item: Any, pointer: str, limits: Limits
) -> tuple[dict[str, Any], list[Note]]:
    """What every kind shares, as `Shape` fields (the defaults, then label, id, attributes,
    kept and unknown keys); and the notes so far."""
    if not isinstance(item, dict):
        raise ConversionError("invalid_type", "an annotation must be a JSON object", pointer)
    raw_label = item.get("label")
    # Labels repeat over every annotation of a job: a usable one is known after its first
    # (only labels within the limit are remembered, and only they can pass this way).
    label = (
        _stripped_label(raw_label)
        if type(raw_label) is str and len(raw_label) <= limits.max_label_chars
        else None
    )
    if label is None:
        label = _checked_label(raw_label, pointer, limits)
    gt_id = item.get("_id", item.get("id"))
    if type(gt_id) is not str:
        gt_id = str_or_none(gt_id)
    attributes, attr_note = normalise_attributes(item.get("attributes"), pointer, "attributes")
    extra, unknown = kept_and_unknown(item)
    fields = {
        **SHAPE_DEFAULTS,
        "kind": kind,
        "label": label,
        "gt_id": gt_id,
        "attributes": attributes,
        "pointer": pointer,
        "extra": extra,
        "unknown_keys": unknown if kind != "cuboid" else (),
    }
    return fields, [attr_note] if attr_note else []


@functools.lru_cache(maxsize=4096)
def _stripped_label(label: str) -> str | None:
    """The stripped label, or None for a blank one (`_checked_label` says why)."""
    return label.strip() or None


def _checked_label(label: Any, pointer: str, limits: Limits) -> str:
    """The label as a stripped string, or the error saying why it is not one."""
    if isinstance(label, (int, float)) and not isinstance(label, bool):
        label = str(label)
    if not isinstance(label, str) or not label.strip():
        raise ConversionError(
            "invalid_label", "label must be a non-empty string", pointer_join(pointer, "label")
        )
    if len(label.strip()) > limits.max_label_chars:
        raise TooLargeError(
            "label_too_long",
            f"label is {len(label.strip())} characters, limit {limits.max_label_chars}",
            pointer_join(pointer, "label"),
        )
    return label.strip()


def polygon_order(
    names: list[str],
    edges: list[tuple[str, str]],
    item: Mapping[str, Any],
    pointer: str,
    notes: list[Note],
) -> list[str]:
    """The drawing order of a polygon's points, noting a repair when the edges are broken."""
    order, how = order_polygon(names, edges)
    if how != "edges" and (bool(edges) or item.get("edges") is not None):
        notes.append(
            Note(
                "repaired",
                f"polygon_{how}",
                pointer_join(pointer, "edges"),
                "edges do not form one ring",
            )
        )
    return order


def parse_shape(kind: str, item: Any, pointer: str, limits: Limits) -> Shape:
    fields, notes = shape_fields(kind, item, pointer, limits)
    base = Shape(coords=NO_POINTS, **fields)
    if kind == "rectangle":
        points = _point_list(item, "coordinates", pointer, limits)
        return replace(base, coords=as_coords(p for _, p in points), notes=tuple(notes))
    if kind == "cuboid":
        found = _collect_points(item, pointer, limits)
        raw = {k: v for k, v in item.items() if k not in {"attributes", "label", "_id", "id"}}
        return replace(base, coords=as_coords(found), raw=raw, notes=tuple(notes))
    named = _point_list(item, "points", pointer, limits)
    names = [n for n, _ in named]
    coords = dict(named)
    edges = edge_list(item.get("edges"), pointer_join(pointer, "edges"), notes)
    if kind in {"polygon", "line"}:
        if kind == "polygon":
            order = polygon_order(names, edges, item, pointer, notes)
        else:
            chain = chain_from_edges(names, edges) if edges else None
            order = chain or natural_sorted(names)
            if bool(edges) and chain is None:
                notes.append(
                    Note(
                        "repaired",
                        "line_natural_order",
                        pointer_join(pointer, "edges"),
                        "edges do not form one chain",
                    )
                )
        return replace(
            base,
            coords=as_coords(coords[n] for n in order),
            point_names=tuple(order),
            edges=tuple(edges) if kind == "line" else (),  # a polygon's are its order
            notes=tuple(notes),
        )
    # landmark
    order = natural_sorted(names)
    raw_points: Any = item.get("points")  # validated by _point_list above
    ids, vis = [], []
    for position, name in enumerate(order, start=1):
        spec = raw_points[name] if isinstance(raw_points, dict) else raw_points[int(name)]
        ids.append(_keypoint_id(spec.get("label"), position, pointer_join(pointer, "points", name)))
        vis.append(_visibility(spec))
    if len(set(ids)) != len(ids):
        raise ConversionError(
            "invalid_landmark", "two points name the same keypoint", pointer_join(pointer, "points")
        )
    return replace(
        base,
        coords=as_coords(coords[n] for n in order),
        point_names=tuple(order),
        keypoint_ids=tuple(ids),
        visibility=tuple(vis),
        edges=tuple(edges),
        notes=tuple(notes),
    )


def _keypoint_id(value: Any, fallback: int, pointer: str) -> int:
    if value is None:
        return fallback
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        if isinstance(value, float) and value.is_integer() and 1 <= value <= 1000:
            return int(value)
        raise ConversionError(
            "invalid_landmark",
            "a landmark point label must be an integer 1..1000",
            pointer_join(pointer, "label"),
        )
    return value


def _visibility(spec: Mapping[str, Any]) -> int:
    """COCO v: 2 visible, 1 labelled but occluded (GT Studio keeps this in flags)."""
    if spec.get("visible") is False or spec.get("occluded") is True:
        return 1
    return 2


def normalise_attributes(raw: Any, pointer: str, *below: str) -> tuple[dict[str, Any], Note | None]:
    """`{name: {"value": v}}`, `{name: v}`, `[{name, value}]`, `[]`, null -> `{name: v}`.
    The note's pointer is `pointer` joined with `below` (built only for a note)."""
    if isinstance(raw, dict):  # as exports write them (first: this runs per annotation)
        out = {
            str(k): v["value"] if isinstance(v, dict) and "value" in v else v
            for k, v in raw.items()
        }
        if not _PLAIN.issuperset(map(type, out.values())):
            out = {k: _clean(v) for k, v in out.items()}
        return out, None
    if raw is None or raw == []:
        return {}, None
    if isinstance(raw, list) and all(isinstance(a, dict) and "name" in a for a in raw):
        return {str(a["name"]): _clean(a.get("value")) for a in raw}, None
    return {"value": _clean(raw)}, Note(
        "repaired",
        "attributes_bare_value",
        pointer_join(pointer, *below),
        "attributes were not an object; kept under 'value'",
    )


# Values `_clean` returns as they are (floats may be NaN or infinite: not plain).
_PLAIN = frozenset({str, int, bool, type(None)})


def _clean(value: Any) -> Any:
    """Attribute values are kept verbatim, except numbers JSON cannot hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    return value


_NUMBER = (float, int)  # exact types: bool is an int subclass and must not pass


def _coordinate(spec: Any, pointer: str, name: str | None = None) -> tuple[float, float]:
    """A validated `(x, y)`; the point's pointer is `pointer/name`, built only on error
    because this runs once per vertex."""
    x: Any = spec.get("x") if isinstance(spec, dict) else None
    y: Any = spec.get("y") if isinstance(spec, dict) else None
    if (
        type(x) in _NUMBER
        and type(y) in _NUMBER
        and COORD_MIN <= x <= COORD_MAX  # NaN fails here and takes the slow path
        and COORD_MIN <= y <= COORD_MAX
    ):
        return float(x), float(y)
    ptr = pointer if name is None else pointer_join(pointer, name)
    if not isinstance(spec, dict):
        raise ConversionError("invalid_type", "a point must be an object with x and y", ptr)
    out = []
    for axis in ("x", "y"):
        value = spec.get(axis)
        axis_ptr = pointer_join(ptr, axis)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConversionError("invalid_coordinate", f"{axis} must be a number", axis_ptr)
        if isinstance(value, float) and not math.isfinite(value):  # an int is finite
            raise ConversionError("invalid_coordinate", f"{axis} is {value}", axis_ptr)
        if not COORD_MIN <= value <= COORD_MAX:
            raise ConversionError(
                "coordinate_out_of_range",
                f"{axis}={value} is far outside the normalised 0..1 range",
                axis_ptr,
            )
        out.append(float(value))
    return out[0], out[1]


def _point_list(
    item: Mapping[str, Any], key: str, pointer: str, limits: Limits
) -> list[tuple[str, tuple[float, float]]]:
    """Named points from `{"p1": {x, y}}` or a list of `{x, y}`."""
    raw = item.get(key)
    ptr = pointer_join(pointer, key)
    if raw is None:
        raise ConversionError("invalid_type", f"{key} is missing", ptr)
    if isinstance(raw, dict):
        entries = list(raw.items())
    elif isinstance(raw, list):
        entries = [(str(i), v) for i, v in enumerate(raw)]
    else:
        raise ConversionError("invalid_type", f"{key} must be an object or a list", ptr)
    if len(entries) > limits.max_points_per_shape:
        raise TooLargeError(
            "too_many_points",
            f"{len(entries)} points in one shape, limit {limits.max_points_per_shape}",
            ptr,
        )
    return [(str(name), _coordinate(spec, ptr, str(name))) for name, spec in entries]


def _collect_points(item: Any, pointer: str, limits: Limits) -> list[tuple[float, float]]:
    """Every `{x, y}` anywhere inside a cuboid, in document order (its layout is undocumented)."""
    found: list[tuple[float, float]] = []
    stack: list[tuple[Any, str]] = [(item, pointer)]
    while stack:
        node, ptr = stack.pop()
        if isinstance(node, dict):
            if "x" in node and "y" in node:
                found.append(_coordinate(node, ptr))
                continue
            for k in sorted(node, reverse=True):
                if k != "attributes":
                    stack.append((node[k], pointer_join(ptr, k)))
        elif isinstance(node, list):
            stack.extend((v, pointer_join(ptr, i)) for i, v in reversed(list(enumerate(node))))
        if len(found) > limits.max_points_per_shape:
            raise TooLargeError("too_many_points", "too many points in one cuboid", pointer)
    return found


def edge_list(raw: Any, pointer: str, notes: list[Note]) -> list[tuple[str, str]]:
    """`{"e1": ["p1", "p2"]}` or a list of pairs, in natural key order; junk is reported."""
    if raw is None or raw == {} or raw == []:
        return []
    if isinstance(raw, dict):
        entries = [(k, raw[k]) for k in natural_sorted(list(raw))]
    elif isinstance(raw, list):
        entries = [(str(i), v) for i, v in enumerate(raw)]
    else:
        notes.append(Note("ignored", "edges_invalid", pointer, "edges must be an object"))
        return []
    edges = []
    for name, pair in entries:
        if isinstance(pair, dict):
            pair = [pair.get("from", pair.get("start")), pair.get("to", pair.get("end"))]
        if (
            isinstance(pair, list)
            and len(pair) == 2
            and isinstance(pair[0], (str, int))
            and isinstance(pair[1], (str, int))
        ):
            edges.append((str(pair[0]), str(pair[1])))
        else:
            notes.append(
                Note(
                    "ignored",
                    "edge_invalid",
                    pointer_join(pointer, name),
                    "an edge must be a pair of point names",
                )
            )
    return edges
