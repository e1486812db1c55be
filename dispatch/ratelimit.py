"""A socket's frame rate limit (PROTOCOL.md §1): a warning at most once a second while frames are
dropped, and close 1008 after ``FLOOD_SECONDS`` consecutive seconds of drops."""

from __future__ import annotations

import time

FLOOD_SECONDS = 5  # consecutive seconds with dropped frames before close 1008


class RateLimiter:
    """A token bucket of twice the per-second rate, and the run of seconds with drops."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = 2 * rate
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.run_start = 0.0  # when the current run of seconds with drops began
        self.last_drop_second = -2  # seconds since run_start of the latest drop
        self.drop_run = 0
        self.last_warning = -1.0

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        # Seconds are counted from the run's first drop, so 5 seconds of flood means 5 seconds.
        second = int(now - self.run_start)
        if second > self.last_drop_second + 1:  # a whole second without drops: a new run
            self.run_start, second, self.drop_run = now, 0, 0
        if second != self.last_drop_second or self.drop_run == 0:
            self.drop_run += 1
            self.last_drop_second = second
        return False

    def should_warn(self) -> bool:
        now = time.monotonic()
        if now - self.last_warning >= 1:
            self.last_warning = now
            return True
        return False

    @property
    def flooding(self) -> bool:
        return self.drop_run >= FLOOD_SECONDS
