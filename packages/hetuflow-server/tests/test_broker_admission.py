"""Admission of registrations: a bounded number in progress, a bounded wait for a place, then refusals."""

from __future__ import annotations

import asyncio

import pytest

from hetuflow_server.broker.admission import RegistrationGate


async def test_places_are_taken_at_once_until_the_limit() -> None:
    gate = RegistrationGate(2, max_waiting=10, wait_secs=0.05)
    assert await gate.enter()
    assert await gate.enter()
    assert not await gate.enter()  # waited for a place, none came
    assert (gate.refused, gate.waiting) == (1, 0)
    gate.leave()
    assert await gate.enter()


async def test_a_waiting_connection_takes_the_place_given_back() -> None:
    gate = RegistrationGate(1, max_waiting=10, wait_secs=30.0)
    assert await gate.enter()
    waiter = asyncio.create_task(gate.enter())
    await asyncio.sleep(0)
    assert gate.waiting == 1
    gate.leave()
    assert await waiter
    assert (gate.refused, gate.waiting) == (0, 0)


async def test_beyond_the_waiting_room_a_connection_is_refused_at_once() -> None:
    gate = RegistrationGate(1, max_waiting=1, wait_secs=30.0)
    assert await gate.enter()
    waiter = asyncio.create_task(gate.enter())
    await asyncio.sleep(0)
    assert not await gate.enter()  # the room is full: no wait at all
    assert gate.refused == 1
    gate.leave()
    assert await waiter


def test_the_limit_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RegistrationGate(0)
