"""Connections killed server-side while a writer appends: retries hide every kill."""

from __future__ import annotations

import pytest

from memweave.providers import from_url
from tests.faults._batches import BatchWriter, Killer, tally
from tests.faults.conftest import TIMEOUT, Target, deadline

pytestmark = [pytest.mark.xdist_group("faults"), pytest.mark.timeout(180)]

BATCHES = 500
SIZE = 4


async def test_add_messages_survives_connection_kills(target: Target, session_id: str) -> None:
    """Connections killed during 500 appends: each batch stored once, in order, no error seen."""
    history = from_url(target.url, timeout=TIMEOUT, **target.options)
    writer = BatchWriter(history, session_id, SIZE)
    killer = Killer(target.kill_connections, writer.acknowledged)
    try:
        await history.count_messages(session_id)  # connected (tables made) before any kill
        killer.start()
        try:
            await writer.write(BATCHES, deadline=deadline(120))
        finally:
            killer.stop()
    finally:
        await history.aclose()
    reader = from_url(target.url, timeout=TIMEOUT, **target.options)
    try:
        stored = [message.id for message in await reader.list_messages(session_id)]
    finally:
        await reader.aclose()
    result = tally(stored, batches=BATCHES, size=SIZE, acknowledged=writer.acknowledged)
    print(
        result.line(
            f"connection kills on {target.name}", kills=killer.kills, errors=writer.error_kinds()
        )
    )
    assert killer.kills > 0, "no connection was killed: the scenario did not happen"
    assert writer.errors == [], f"errors reached the caller: {writer.error_kinds()}"
    assert (result.lost, result.duplicated, result.partial) == (0, 0, 0), result
    assert result.sound, result
    assert result.stored == BATCHES, result
