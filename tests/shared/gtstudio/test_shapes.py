"""Annotation fields (`gtstudio/shapes.py`): the per-annotation fast paths give what the
general ones give."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shared.config import Limits
from shared.errors import ConversionError
from shared.gtstudio.shapes import _clean, normalise_attributes, shape_fields

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5),
                    st.floats(allow_nan=True, allow_infinity=True))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=8)
attribute = st.one_of(values, st.fixed_dictionaries({"value": values}))


@given(st.dictionaries(st.text(max_size=6), attribute, min_size=1, max_size=6))
def test_attribute_objects_keep_each_value_and_clean_what_json_cannot_hold(
    raw: dict[str, Any]
) -> None:
    found, note = normalise_attributes(raw, "/a", "attributes")
    assert note is None
    expected = {k: _clean(v["value"] if isinstance(v, dict) and "value" in v else v)
                for k, v in raw.items()}
    assert json.dumps(found, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert json.loads(json.dumps(found, allow_nan=False)) is not None  # valid JSON throughout


labels = st.one_of(st.text(max_size=8), st.integers(), st.floats(), st.booleans(), st.none(),
                   st.text(alphabet=" \t", max_size=3).map(lambda pad: pad + "car" + pad))


@given(labels, st.integers(1, 6))
def test_a_label_is_kept_stripped_or_refused_whatever_was_seen_before(
    label: Any, most: int
) -> None:
    limits = Limits(max_label_chars=most)
    item = {"label": label}
    first = _fields_or_error(item, limits)
    assert _fields_or_error(item, limits) == first  # the cache changes nothing
    text = str(label) if isinstance(label, (int, float)) and not isinstance(label, bool) else label
    if isinstance(text, str) and text.strip() and len(text.strip()) <= most:
        assert first == text.strip()
    else:
        assert isinstance(first, tuple) and first[0] in {"invalid_label", "label_too_long"}


def _fields_or_error(item: dict[str, Any], limits: Limits) -> Any:
    try:
        return shape_fields("polygon", item, "/p", limits)[0]["label"]
    except ConversionError as error:
        return error.code, error.pointer
