"""Pure helpers of the core: retry delays, UUIDv7 ids, final states, protocol version compatibility."""

from __future__ import annotations

import time
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hetuflow_core import (
    PROTOCOL_VERSION,
    BackoffKind,
    InstanceStatus,
    RetryPolicy,
    TaskStatus,
    new_message_id,
    now_ms,
    uuid7,
)
from hetuflow_core.protocol import is_compatible

# ------------------------------------------------------------------ RetryPolicy.delay_secs


def test_exponential_backoff_doubles_from_the_base() -> None:
    policy = RetryPolicy(max_retries=10, base_secs=2.0, max_secs=1000.0, jitter=0.0)
    assert [policy.delay_secs(n) for n in range(1, 6)] == [2.0, 4.0, 8.0, 16.0, 32.0]


def test_exponential_backoff_is_capped_at_max() -> None:
    policy = RetryPolicy(base_secs=1.0, max_secs=10.0, jitter=0.0)
    assert policy.delay_secs(4) == 8.0
    assert policy.delay_secs(5) == 10.0
    assert policy.delay_secs(100) == 10.0
    assert policy.delay_secs(10**6) == 10.0  # no OverflowError however large the attempt number


def test_fixed_backoff_is_constant() -> None:
    policy = RetryPolicy(backoff=BackoffKind.FIXED, base_secs=3.0, max_secs=10.0, jitter=0.0)
    assert {policy.delay_secs(n) for n in range(1, 20)} == {3.0}


def test_fixed_backoff_respects_max() -> None:
    assert (
        RetryPolicy(backoff=BackoffKind.FIXED, base_secs=30.0, max_secs=10.0, jitter=0.0).delay_secs(1)
        == 10.0
    )


def test_jitter_adds_a_random_fraction_on_top_of_the_capped_delay() -> None:
    policy = RetryPolicy(base_secs=4.0, max_secs=100.0, jitter=0.5)
    assert policy.delay_secs(1, rand=0.0) == 4.0
    assert policy.delay_secs(1, rand=0.5) == 5.0
    assert policy.delay_secs(1, rand=0.999) == pytest.approx(5.998)
    # The cap applies before jitter, so a capped delay may exceed max_secs by up to the jitter fraction.
    assert RetryPolicy(base_secs=1.0, max_secs=8.0, jitter=0.5).delay_secs(10, rand=0.5) == 10.0


def test_retry_numbers_below_one_count_as_the_first() -> None:
    policy = RetryPolicy(base_secs=2.0, jitter=0.0)
    assert policy.delay_secs(0) == policy.delay_secs(-3) == policy.delay_secs(1) == 2.0


def test_default_policy() -> None:
    policy = RetryPolicy()
    assert (policy.max_retries, policy.backoff, policy.base_secs, policy.max_secs, policy.jitter) == (
        0,
        BackoffKind.EXPONENTIAL,
        1.0,
        300.0,
        0.1,
    )


@given(
    base=st.floats(0, 86_400),
    cap=st.floats(0, 604_800),
    jitter=st.floats(0, 1),
    rand=st.floats(0, 1, exclude_max=True),
    retry=st.integers(1, 1000),
    backoff=st.sampled_from(BackoffKind),
)
def test_delays_are_bounded_and_grow(
    base: float, cap: float, jitter: float, rand: float, retry: int, backoff: BackoffKind
) -> None:
    policy = RetryPolicy(backoff=backoff, base_secs=base, max_secs=cap, jitter=jitter)
    delay = policy.delay_secs(retry, rand)
    assert 0.0 <= delay <= min(base * 2.0 ** (retry - 1), cap) * (1 + jitter)
    assert policy.delay_secs(retry + 1, rand) >= delay


# ------------------------------------------------------------------ ids


def test_uuid7_has_version_and_variant_bits() -> None:
    value = uuid7()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


@given(st.integers(0, 2**48 - 1))
def test_uuid7_carries_its_millisecond_timestamp(ms: int) -> None:
    value = uuid7(ms)
    assert value.int >> 80 == ms
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


@given(st.lists(st.integers(0, 2**48 - 1), min_size=2, max_size=50, unique=True))
def test_uuid7_sorts_by_time(timestamps: list[int]) -> None:
    ids = {ms: uuid7(ms) for ms in timestamps}
    assert sorted(ids.values()) == [ids[ms] for ms in sorted(timestamps)]
    assert sorted(str(v) for v in ids.values()) == [str(ids[ms]) for ms in sorted(timestamps)]


def test_uuid7_is_random_within_one_millisecond() -> None:
    assert len({uuid7(1_700_000_000_000) for _ in range(1000)}) == 1000


def test_uuid7_now_is_current() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert before <= value.int >> 80 <= after


def test_message_ids_and_clock() -> None:
    message_id = new_message_id()
    assert len(message_id) == 32
    assert uuid.UUID(hex=message_id).version == 7
    assert abs(now_ms() - time.time() * 1000) < 1000


# ------------------------------------------------------------------ final states


def test_final_task_states() -> None:
    final = {s for s in TaskStatus if s.is_final}
    assert final == {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED}


def test_final_instance_states() -> None:
    active = {s for s in InstanceStatus if not s.is_final}
    assert active == {InstanceStatus.DISPATCHED, InstanceStatus.RUNNING}


# ------------------------------------------------------------------ protocol versions


@pytest.mark.parametrize(
    ("version", "compatible"),
    [
        (PROTOCOL_VERSION, True),
        ("1.0", True),
        ("1.9", True),
        ("1", True),
        ("1.0.3", True),
        ("2.0", False),
        ("0.9", False),
        ("10.0", False),
        ("", False),
        ("one", False),
        (" 1.0", False),
    ],
)
def test_is_compatible(version: str, compatible: bool) -> None:
    assert is_compatible(version) is compatible


def test_protocol_version_is_major_dot_minor() -> None:
    major, minor = PROTOCOL_VERSION.split(".")
    assert major.isdigit()
    assert minor.isdigit()
