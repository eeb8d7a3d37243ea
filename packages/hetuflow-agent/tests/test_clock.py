"""Clock: the server offset from request/response samples, filtered by the smallest round trip."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hetuflow_agent.scheduler import Clock


class FakeWall:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_trusts_the_local_clock_until_the_first_sample() -> None:
    clock = Clock(wall=FakeWall(1000.0))
    assert not clock.synced
    assert clock.offset_secs == 0.0
    assert clock.error_secs is None
    assert clock.server_time() == 1000.0


def test_offset_is_server_time_minus_the_local_midpoint() -> None:
    wall = FakeWall(1000.0)
    clock = Clock(wall=wall)
    # Sent at 1000.000, received at 1000.100 (local); the server stamped 1002.550 (2.5 s ahead).
    assert clock.observe(server_time_ms=1_002_550, sent_ms=1_000_000, received_ms=1_000_100)
    assert clock.synced
    assert clock.offset_secs == pytest.approx(2.5)
    assert clock.error_secs == pytest.approx(0.05)
    assert clock.server_time() == pytest.approx(1002.5)
    assert clock.server_now() == datetime.fromtimestamp(1002.5, UTC)


def test_the_sample_with_the_smallest_round_trip_wins() -> None:
    clock = Clock(wall=FakeWall(0.0))
    clock.observe(server_time_ms=10_500, sent_ms=9_000, received_ms=10_000)  # rtt 1 s, offset +1.0
    clock.observe(server_time_ms=20_210, sent_ms=20_000, received_ms=20_020)  # rtt 20 ms, offset +0.2
    clock.observe(server_time_ms=30_900, sent_ms=30_000, received_ms=30_400)  # rtt 400 ms, offset +0.7
    assert clock.offset_secs == pytest.approx(0.2)
    assert clock.error_secs == pytest.approx(0.01)


def test_old_samples_leave_the_window() -> None:
    clock = Clock(window=2, wall=FakeWall(0.0))
    clock.observe(server_time_ms=1_005, sent_ms=1_000, received_ms=1_000)  # rtt 0, offset +5 ms
    clock.observe(server_time_ms=2_100, sent_ms=2_000, received_ms=2_010)
    clock.observe(server_time_ms=3_100, sent_ms=3_000, received_ms=3_020)
    assert clock.offset_secs == pytest.approx(0.095)  # the rtt-0 sample is gone; 10 ms rtt is best now


def test_a_negative_round_trip_or_a_missing_server_time_is_ignored() -> None:
    clock = Clock(wall=FakeWall(0.0))
    assert not clock.observe(server_time_ms=5_000, sent_ms=2_000, received_ms=1_000)
    assert not clock.observe(server_time_ms=0, sent_ms=1_000, received_ms=1_001)
    assert not clock.synced


def test_received_defaults_to_now() -> None:
    clock = Clock(wall=FakeWall(10.0))
    clock.observe(server_time_ms=13_000, sent_ms=10_000)
    assert clock.offset_secs == pytest.approx(3.0)


def test_to_local_maps_server_moments_to_local_epoch_times() -> None:
    clock = Clock(wall=FakeWall(0.0))
    clock.observe(server_time_ms=60_000, sent_ms=0, received_ms=0)  # server 60 s ahead
    assert clock.to_local(datetime.fromtimestamp(100.0, UTC)) == pytest.approx(40.0)
    assert clock.to_local(datetime(1970, 1, 1, 0, 1, 40)) == pytest.approx(40.0)  # naive is UTC


def test_window_must_hold_a_sample() -> None:
    with pytest.raises(ValueError, match="window"):
        Clock(window=0)
