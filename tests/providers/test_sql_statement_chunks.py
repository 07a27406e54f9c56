"""Multi-row inserts (MariaDB/MySQL): each statement fits the server's `max_allowed_packet`,
whatever it is, and batches are split no more than they must be."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from memweave.providers._limits import ROW_ROOM, mysql_limit
from memweave.providers._sql_steps import statement_chunks

_SIZES = st.lists(st.integers(0, 3 << 20), min_size=1, max_size=60)
_PACKETS = st.integers(64 << 10, 64 << 20)


_BUFFER = memoryview(bytes(3 << 20))


def _rows(sizes: list[int]) -> list[dict[str, Any]]:
    return [{"data": _BUFFER[:size]} for size in sizes]


@given(sizes=_SIZES, packet=_PACKETS)
def test_statement_chunks_fit_max_allowed_packet(sizes: list[int], packet: int) -> None:
    """A run of several rows, hex-encoded with `ROW_ROOM` per row, fits in one packet."""
    for chunk in statement_chunks(_rows(sizes), mysql_limit(packet)):
        if len(chunk) > 1:
            data = sum(len(row["data"]) for row in chunk)
            assert 2 * data + len(chunk) * ROW_ROOM <= packet


@given(sizes=_SIZES, packet=_PACKETS)
def test_statement_chunks_keep_every_row_in_order(sizes: list[int], packet: int) -> None:
    """Splitting loses, repeats and reorders no row."""
    rows = _rows(sizes)
    chunks = list(statement_chunks(rows, mysql_limit(packet)))
    assert [row for chunk in chunks for row in chunk] == rows
    assert all(chunks)


def test_statement_chunks_at_the_default_packet_send_small_rows_together() -> None:
    """At MariaDB's default 16 MiB packet, 500 small rows go out as one statement."""
    chunks = list(statement_chunks(_rows([200] * 500), mysql_limit(16 << 20)))
    assert [len(chunk) for chunk in chunks] == [500]
