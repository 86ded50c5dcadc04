"""The collector is relaxed once a shard is built, and only then."""

import gc
from collections.abc import Iterator

import pytest

from operators.count import WindowShardLogic
from operators.pure.slices import SliceSpec
from operators.runtime.collector import OLDER_THRESHOLDS, YOUNG_THRESHOLD, relax_collector


@pytest.fixture
def default_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


@pytest.mark.usefixtures("default_thresholds")
def test_building_a_shard_relaxes_the_collector() -> None:
    assert gc.get_threshold() == (700, 10, 10)
    WindowShardLogic([SliceSpec(("user_id",), 1)], 60, 4, None, input_topic="user-login", max_windows=128, decisions=())
    assert gc.get_threshold() == (YOUNG_THRESHOLD, *OLDER_THRESHOLDS)


@pytest.mark.usefixtures("default_thresholds")
def test_relaxing_twice_changes_nothing_more() -> None:
    relax_collector()
    relax_collector()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    assert gc.isenabled()
