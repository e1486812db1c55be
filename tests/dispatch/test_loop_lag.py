"""A server process's own event-loop watch, in this process on the real Redis: a loop held up
past the warning bound is logged with the lag named, and the histogram it publishes is what
/metrics reads for every live process."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from dispatch import fleet, loop_lag, metrics


async def test_a_late_tick_is_logged_by_its_lag_and_published(published, caplog):
    caplog.set_level(logging.WARNING, logger="dispatch.loop_lag")
    watching = asyncio.ensure_future(loop_lag.loop_watch())
    await asyncio.sleep(loop_lag.TICK_S * 3)
    held_until = time.perf_counter() + 0.3
    while time.perf_counter() < held_until:  # CPU-heavy work on the loop holds it up
        pass
    await asyncio.sleep(loop_lag.PUBLISH_EVERY_S + loop_lag.TICK_S * 4)
    watching.cancel()

    late = [record for record in caplog.records if record.getMessage().startswith("event loop late by ")]
    assert len(late) == 1 and late[0].levelno == logging.WARNING
    assert 250 <= int(late[0].getMessage().split()[4]) < 2000, late[0].getMessage()
    lags = await loop_lag.loop_lags()
    histogram = lags[loop_lag.process_name()]
    buckets = dict(histogram.cumulative())
    assert buckets["0.25"] == histogram.count - 1 == buckets["+Inf"] - 1, "one tick later than 0.25 s"
    assert histogram.max_s >= 0.25

    summary, live = fleet.Summary(), await fleet.fleet_live()
    text = metrics.metrics_text(summary, live, lags)
    name = f'scheduler_event_loop_lag_seconds_count{{process="{loop_lag.process_name()}"}}'
    assert f"{name} {histogram.count}\n" in text
    assert "# TYPE scheduler_event_loop_lag_seconds histogram\n" in text


@pytest.mark.parametrize("raw", ["", "{}", '{"counts": [1, 2]}', "not json"])
def test_a_histogram_published_otherwise_is_left_out(raw):
    assert loop_lag.LagHistogram.from_json(raw) is None
