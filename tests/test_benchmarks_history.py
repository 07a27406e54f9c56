"""The history benchmark measures what its table says it measures."""

from __future__ import annotations

from benchmarks.history import OPERATIONS, _bench_size
from memweave import ChatMessage, InMemoryChatHistoryProvider


class _CountingReads(InMemoryChatHistoryProvider):
    """Records how many messages each whole-session read returned."""

    def __init__(self) -> None:
        super().__init__()
        self.full_reads: list[int] = []

    async def list_messages(
        self, session_id: str, *, limit: int | None = None
    ) -> list[ChatMessage]:
        messages = await super().list_messages(session_id, limit=limit)
        if limit is None:
            self.full_reads.append(len(messages))
        return messages


async def test_read_all_reads_exactly_n_messages() -> None:
    """`read_all` at N reads N messages, not N plus the messages the timed appends added."""
    history = _CountingReads()
    results = await _bench_size("memory", "memory://", history, 50, quick=True)
    assert history.full_reads == [50, 50, 50]  # quick mode: three timed reads
    assert [m.operation for m in results] == list(OPERATIONS)
    assert all(m.n == 50 and m.p50_ms >= 0 for m in results)
