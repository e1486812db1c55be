"""The server's garbage-collector policy (schedulerproj/gc_policy.py), in this process."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator

import pytest

from schedulerproj import gc_policy


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds, callbacks = gc.get_threshold(), list(gc.callbacks)
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    gc.callbacks[:] = callbacks


def test_start_up_objects_leave_collections_and_young_ones_wait_longer(restored: None) -> None:
    gc.unfreeze()
    gc_policy.settle()

    assert gc.get_freeze_count() > 10_000  # modules, Django, the app
    assert gc.get_threshold()[0] == gc_policy.YOUNG


def test_a_long_full_collection_is_logged(restored: None, caplog: pytest.LogCaptureFixture) -> None:
    gc_policy.settle(warn_s=0.0)
    gc_policy.settle(warn_s=0.0)  # settling twice keeps one watcher
    watchers = [callback for callback in gc.callbacks if isinstance(callback, gc_policy._FullCollections)]
    assert len(watchers) == 1

    with caplog.at_level(logging.WARNING, logger="schedulerproj.gc"):
        gc.collect(2)

    assert caplog.records[-1].getMessage().startswith("a full garbage collection held the loop")
