"""The stored packings of mistake fixtures (tests/fixtures/mistake_groups.json) are current.

The packing decides which mistakes share a submission in the autograde and make-grade class
runs; a stale entry is recomputed there (about 5 s a lab), so this test only keeps the suite fast.
"""

from __future__ import annotations

import pytest

from coursetools.paths import lab_ids
from fixtures.mistake_groups import stored_groups
from fixtures.mistakes import MISTAKES
from fixtures.notebooks import representatives


@pytest.mark.parametrize("lab", [lab for lab in lab_ids() if MISTAKES.get(lab)])
def test_stored_packing_is_current_and_covers_every_representative(lab):
    mistakes = representatives(lab)
    groups = stored_groups(lab, mistakes)
    assert groups is not None, "stale: run `.venv/bin/python tests/fixtures/mistake_groups.py` and commit the JSON"
    assert sorted(m.id for g in groups for m in g) == sorted(m.id for m in mistakes)
    for group in groups:
        assert len({m.cell for m in group}) == len(group), "two mistakes of one cell in one submission"
