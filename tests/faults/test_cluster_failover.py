"""A Redis Cluster master SIGKILLed under a writer: writes resume once its replica takes over."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from memweave.providers import from_url
from tests.faults._batches import BatchWriter, tally
from tests.faults._servers import RedisNodes
from tests.faults.conftest import TIMEOUT, deadline

pytestmark = [pytest.mark.xdist_group("faults"), pytest.mark.timeout(180)]

SIZE = 4
BEFORE, DURING, AFTER = 20, 60, 100
"""Batches acknowledged before the kill; written while it happens; in all (after failover)."""


async def test_add_messages_resumes_after_master_failover(
    redis_cluster: RedisNodes, session_id: str
) -> None:
    """A killed master fails over: writes resume, only typed errors in between, nothing lost."""
    prefix = f"mwf{uuid.uuid4().hex[:10]}"
    pattern = f"{prefix}:{{*}}:msgs"  # the session's message list, on its master only
    history = from_url(redis_cluster.url, timeout=TIMEOUT, namespace=prefix)
    writer = BatchWriter(history, session_id, SIZE, retry=True, pause=0.1)
    try:
        await writer.write(BEFORE, deadline=deadline(60))
        holders = redis_cluster.holding(pattern)
        assert len(holders) == 1, f"the session's keys are on {holders}"
        await asyncio.sleep(random.uniform(0, 0.005))
        killing = asyncio.create_task(asyncio.to_thread(redis_cluster.kill, holders[0]))
        await writer.write(DURING, deadline=deadline(90))
        await killing
        await writer.write(AFTER, deadline=deadline(90))  # once a replica has taken over
    finally:
        await history.aclose()
    live = redis_cluster.live_ports()[0]
    reader = from_url(f"redis+cluster://127.0.0.1:{live}", timeout=TIMEOUT, namespace=prefix)
    try:
        stored = [message.id for message in await reader.list_messages(session_id)]
    finally:
        await reader.aclose()
    moved_to = redis_cluster.holding(pattern)
    result = tally(stored, batches=AFTER, size=SIZE, acknowledged=writer.acknowledged)
    print(result.line("cluster master SIGKILL", errors=writer.error_kinds(), moved_to=moved_to))
    assert moved_to, "no live master holds the session after the failover"
    assert holders[0] not in moved_to
    assert (result.lost, result.duplicated, result.partial) == (0, 0, 0), result
    assert result.sound, result
    assert result.stored == AFTER, result
