"""Colour legends of GT Studio segmentation exports (gt-studio-format.md §3)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from shared.errors import ConversionError, pointer_join
from shared.gtstudio.records import Note

_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")
_RGB = re.compile(
    r"^rgba?\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*(?:,\s*[\d.]+\s*)?\)$", re.IGNORECASE
)
_INSTANCE = re.compile(r"^(.*?)\s*#\s*(\d+)\s*$")


@dataclass(frozen=True)
class LegendEntry:
    rgb: int  # 0xRRGGBB
    label: str
    instance: int | None
    gt_id: str | None = None

    @cached_property  # asked for several times per colour
    def hex(self) -> str:
        return f"{self.rgb:06x}"


def parse_color(key: str) -> int | None:
    """`#rrggbb`, `rrggbb`, upper case, or `rgb(r, g, b)` -> 0xRRGGBB; None if malformed."""
    key = key.strip()
    m = _HEX.match(key)
    if m:
        return int(m.group(1), 16)
    m = _RGB.match(key)
    if m:
        r, g, b = (int(v) for v in m.groups())
        if max(r, g, b) <= 255:
            return (r << 16) | (g << 8) | b
    return None


def looks_like_color(key: Any) -> bool:
    """Loose test used to recognise a bare legend object (malformed keys still count)."""
    return isinstance(key, str) and (
        key.startswith("#") or key.lower().startswith("rgb(") or _HEX.match(key) is not None
    )


def is_bare_legend(doc: Any) -> bool:
    """The legend half of a raster export pair: `{"#rrggbb": label}` or `{legend, instances}`."""
    if not isinstance(doc, dict) or not doc:
        return False
    if "legend" in doc and "url" not in doc:
        return isinstance(doc["legend"], dict)
    return all(looks_like_color(k) for k in doc)


def split_instance(value: str) -> tuple[str, int | None]:
    """`"car # 3"`, `"Car #5"` -> (class, n); a bare class -> (class, None)."""
    m = _INSTANCE.match(value.strip())
    if m and m.group(1).strip():
        return m.group(1).strip(), int(m.group(2))
    return value.strip(), None


def _label_text(value: Any) -> str | None:
    if isinstance(value, dict):  # another Playment product writes {"value"|"text"|"label": ...}
        for key in ("value", "text", "label", "name"):
            if isinstance(value.get(key), str):
                return str(value[key])
        return None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    return None


def parse_legend(legend: Any, instances: Any, pointer: str) -> tuple[list[LegendEntry], list[Note]]:
    """Legend entries sorted by colour, plus notes for every key that could not be used."""
    if legend is None and not instances:
        raise ConversionError(
            "missing_legend", "a segmentation job needs a legend", pointer_join(pointer, "legend")
        )
    if legend is not None and not isinstance(legend, dict):
        raise ConversionError(
            "invalid_legend",
            "legend must be an object of colour -> label",
            pointer_join(pointer, "legend"),
        )
    notes: list[Note] = []
    entries: dict[int, LegendEntry] = {}
    by_instance: dict[int, LegendEntry] = {}
    if instances is not None:
        iptr = pointer_join(pointer, "instances")
        if not isinstance(instances, list):
            raise ConversionError("invalid_legend", "instances must be a list", iptr)
        for i, item in enumerate(instances):
            ptr = pointer_join(iptr, i)
            color = parse_color(str(item.get("color", ""))) if isinstance(item, dict) else None
            text = (
                _label_text(item.get("value", item.get("label")))
                if isinstance(item, dict)
                else None
            )
            if color is None or not text:
                notes.append(
                    Note("ignored", "malformed_instance", ptr, "needs a colour and a value")
                )
                continue
            label, number = split_instance(text)
            gt_id = item.get("_id", item.get("id"))
            by_instance[color] = LegendEntry(
                color, label, number, None if gt_id is None else str(gt_id)
            )
    by_key: dict[str, Any] = legend or {}
    for key in sorted(by_key):
        ptr = pointer_join(pointer, "legend", key)
        color = parse_color(key)
        text = _label_text(by_key[key])
        if color is None:
            notes.append(Note("ignored", "malformed_color", ptr, f"legend key {key!r}"))
            continue
        if not text:
            notes.append(Note("ignored", "malformed_label", ptr, "legend value has no label"))
            continue
        label, number = split_instance(text)
        if color in entries and entries[color] != LegendEntry(color, label, number):
            notes.append(Note("ignored", "duplicate_color", ptr, f"#{color:06x} listed twice"))
            continue
        entries[color] = LegendEntry(color, label, number)
    entries.update(by_instance)  # the instances list is the more precise source
    if not entries:
        raise ConversionError(
            "empty_legend", "the legend has no usable colour", pointer_join(pointer, "legend")
        )
    return [entries[c] for c in sorted(entries)], notes
