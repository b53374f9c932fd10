"""JSON pointers (RFC 6901): each reference token escaped on its own."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shared.errors import pointer_join, pointer_tokens

tokens = st.lists(st.one_of(st.text(st.sampled_from(list("/~01a~/ é")), max_size=5),
                            st.integers(0, 99)), max_size=5)


@given(tokens)
def test_pointers_round_trip_token_by_token(parts: list[str | int]) -> None:
    pointer = pointer_join("", *parts)
    assert pointer_tokens(pointer) == [str(p) for p in parts]


@given(st.lists(st.text(st.sampled_from(list("/~01a")), max_size=4), min_size=1, max_size=4))
def test_a_pointer_finds_its_value(keys: list[str]) -> None:
    doc: Any = "leaf"
    for key in reversed(keys):
        doc = {key: doc}
    found = doc
    for token in pointer_tokens(pointer_join("", *keys)):
        found = found[token]
    assert found == "leaf"


def test_known_escapes() -> None:
    assert pointer_join("", "video_data", "frames", 0, "src") == "/video_data/frames/0/src"
    assert pointer_join("/a", "b/c", "d~e") == "/a/b~1c/d~0e"
