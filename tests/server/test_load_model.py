"""The team load model of ``attention-flows bench team`` (benchmarks/team_load.py) does what docs/deploy.md says."""

import itertools

from benchmarks.dashboard import CHANGES, initial_values
from benchmarks.team_load import LOAD_CHANGES

METHOD, TARGET = "relevance-method-dropdown.value", "target-class-dropdown.value"


def test_a_users_cycle_makes_every_change_and_returns_every_control_to_its_default():
    defaults = initial_values()
    assert all(change in LOAD_CHANGES for change in CHANGES)  # the dashboard bench's changes, every one
    values = dict(defaults)
    for changed, value in LOAD_CHANGES:
        values[changed] = value
    back = {name: value for name, value in values.items() if name != "selected-head-store.data"}
    assert back == {name: value for name, value in defaults.items() if name != "selected-head-store.data"}


def test_another_method_or_class_is_a_look_then_back():
    """An analysis made while DecompX (~n passes) or another class is on pays for it: a user returns at once."""
    for (changed, value), (after, back) in itertools.pairwise(LOAD_CHANGES):
        if changed in (METHOD, TARGET) and value != initial_values()[changed]:
            assert (after, back) == (changed, initial_values()[changed]), (changed, value)
