"""The mutation set: off-brand, off-tone and non-compliant changes to the example packs."""

from __future__ import annotations

from pathlib import Path

import pytest

from .mutations import HELD_OUT, MUTATIONS, Mutation, caught


def test_the_mutation_set_is_large_and_covers_every_family() -> None:
    """The set has dozens of mutations over both packs and every example template."""
    every = MUTATIONS + HELD_OUT
    assert len(every) >= 80
    assert len({m.id for m in every}) == len(every)
    assert {m.pack for m in every} == {"acme", "globex"}
    assert {m.template for m in every} == {"payment_reminder", "product_offer", "welcome",
                                          "monthly_statement", "nps_survey"}


@pytest.mark.parametrize("mutation", MUTATIONS + HELD_OUT, ids=lambda m: m.id)
def test_each_mutation_is_caught(mutation: Mutation, tmp_path: Path) -> None:
    """Linting the mutated copy reports one of the rules that cover the change."""
    ok, found = caught(mutation, tmp_path)
    assert ok, (mutation.id, sorted({f.rule for f in found}))
