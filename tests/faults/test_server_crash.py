"""A server SIGKILLed and restarted under a writer: durable data survives, the provider recovers."""

from __future__ import annotations

import asyncio
import random

import pytest

from memweave.providers import from_url
from tests.faults._batches import BatchWriter, tally
from tests.faults.conftest import TIMEOUT, Target, deadline

pytestmark = [pytest.mark.xdist_group("faults"), pytest.mark.timeout(180)]

SIZE = 4
BEFORE, DURING, AFTER = 30, 120, 150
"""Batches acknowledged before the crash; written while it happens; in all (after restart)."""


@pytest.fixture(params=["redis", "postgres"])
def durable_target(request: pytest.FixtureRequest) -> Target:
    """A server of the suite's own with durable settings (`appendfsync always`, fsync on)."""
    value: Target = request.getfixturevalue(f"{request.param}_target")
    return value


async def test_add_messages_keeps_acknowledged_batches_across_crash(
    durable_target: Target, session_id: str
) -> None:
    """A SIGKILL and restart loses no acknowledged batch; the same provider writes on after it."""
    target = durable_target

    def crash_and_restart() -> None:
        target.crash()
        target.restart()

    history = from_url(target.url, timeout=TIMEOUT, **target.options)
    writer = BatchWriter(history, session_id, SIZE, retry=True)
    try:
        await writer.write(BEFORE, deadline=deadline(60))
        await asyncio.sleep(random.uniform(0, 0.005))
        crashing = asyncio.create_task(asyncio.to_thread(crash_and_restart))
        await writer.write(DURING, deadline=deadline(90))  # while the server dies and returns
        await crashing
        await writer.write(AFTER, deadline=deadline(60))
    finally:
        await history.aclose()
    reader = from_url(target.url, timeout=TIMEOUT, **target.options)
    try:
        stored = [message.id for message in await reader.list_messages(session_id)]
    finally:
        await reader.aclose()
    result = tally(stored, batches=AFTER, size=SIZE, acknowledged=writer.acknowledged)
    print(result.line(f"server crash on {target.name}", errors=writer.error_kinds()))
    assert (result.lost, result.duplicated, result.partial) == (0, 0, 0), result
    assert result.sound, result
    assert result.stored == AFTER, result
