"""`make mutants` breaks each guard by replacing its text: the text must still be there
(a guard that moved would silently drop out of the proof)."""

from __future__ import annotations

import pytest

from tests.mutants import MUTANTS, ROOT, Mutant


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.label for m in MUTANTS])
def test_each_guard_text_is_still_in_its_file(mutant: Mutant) -> None:
    assert mutant.old in (ROOT / mutant.path).read_text(), (
        f"{mutant.label}: its guard text is gone from {mutant.path}")
    assert mutant.old != mutant.new
