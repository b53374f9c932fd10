"""Terraform files of infra/ as plain Python data, through python-hcl2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl2

INFRA = Path(__file__).resolve().parents[2] / "infra"
_MARKERS = {"__is_block__", "__comments__", "__inline_comments__"}


def _plain(value: Any) -> Any:
    """Drop python-hcl2's markers; unquote keys and string literals (`"x"` -> `x`);
    expressions stay as python-hcl2 writes them (`${var.x}`)."""
    if isinstance(value, dict):
        return {_unquote(k): _plain(v) for k, v in value.items() if k not in _MARKERS}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return _unquote(value)
    return value


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def load(name: str) -> dict[str, Any]:
    with (INFRA / name).open() as handle:
        result: dict[str, Any] = _plain(hcl2.load(handle))
    return result


def blocks(kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every `resource` or `data` block of every file: (type, name) -> body."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(INFRA.glob("*.tf")):
        for entry in load(path.name).get(kind, []):
            for type_name, named in entry.items():
                for name, body in named.items():
                    found[(type_name, name)] = body
    return found


def variables() -> dict[str, dict[str, Any]]:
    return {k: v for entry in load("variables.tf")["variable"] for k, v in entry.items()}


def locals_() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in sorted(INFRA.glob("*.tf")):
        for entry in load(path.name).get("locals", []):
            merged.update(entry)
    return merged
