"""The mutants of `make mutants` stay aimed at the code as it is: a mutant whose line has moved would
otherwise stop the run only when someone runs it."""

from __future__ import annotations

import pytest

from batchbridge_local.mutants import MUTANTS
from batchbridge_local.template import ROOT


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_each_mutant_changes_one_line_that_exists_and_names_tests_that_exist(mutant):
    text = (ROOT / mutant.path).read_text()
    assert text.count(mutant.old) == 1, f"{mutant.path} no longer holds the guard exactly once"
    assert mutant.new != mutant.old
    for test in mutant.tests:
        path, _, name = test.partition("::")
        source = (ROOT / path).read_text()
        assert not name or f"def {name}(" in source, test


def test_the_mutants_have_distinct_names():
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
