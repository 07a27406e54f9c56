"""The backends `memweave.bench.scale` runs on: opening, seeding, raw-client floors, clean-up.

A `Target` is one backend under names of its own for this run: SQL tables in a fresh
`namespace` (dropped afterwards, with the floors' raw tables; `_scale_sql`), Redis keys
in a fresh `namespace` (deleted afterwards, or gone with the throwaway server;
`_scale_redis`), or an in-process memory store (here). Besides opening memweave providers on
it, a target does what the raw client would do for the same question (the floors), and
seeds many sessions, or one long session, fast but with exactly what memweave stores:

- SQL: one session is stored through the provider, then copied to the other ids with
  `INSERT ... SELECT` over a number series (`generate_series`, MariaDB's `seq_0_to_N`
  table, a recursive CTE on SQLite), column by column from the provider's own tables. A long
  session's first batch goes through the provider; the others are multi-row `INSERT`s of
  the columns it writes, and the session row's count is set to the rows stored.
- Redis: memweave's own append script with the keys and arguments `add_messages` sends,
  many sessions per pipeline (it reaches into the provider's private key naming, and falls
  back to `add_messages` when that changes).
- Memory: through `add_messages`.

Every seeding is checked through the public API before anything is timed.
"""

from __future__ import annotations

import bisect
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from memweave._urls import mask_url
from memweave.messages import ChatMessage
from memweave.providers import ChatHistoryProvider, from_url

if TYPE_CHECKING:
    from memweave.bench._scale_export import Row

__all__ = ["SESSION_TEMPLATE", "MemoryTarget", "Target", "make_target", "session_id"]

ID_WIDTH = 8
"""Digits of the numbered session ids, so code-point order is numeric order."""

SESSION_TEMPLATE = (
    ChatMessage.user("Can you help me plan the quarterly report?", id="m-0"),
    ChatMessage.assistant("Sure: start from last quarter's figures and the open items.", id="m-1"),
)
"""The messages of each seeded session (message ids are per session, so they repeat)."""


def session_id(index: int) -> str:
    """The id of seeded session number `index`: `s00000042`."""
    return f"s{index:0{ID_WIDTH}d}"


@dataclass
class Target(ABC):
    """One backend under names of its own for this run."""

    name: str
    """`memory`, `sqlite`, `postgresql`, `mariadb` or `redis`."""
    url: str
    options: dict[str, Any] = field(default_factory=dict)
    """Provider options that keep this run apart (`namespace`)."""

    floor_needs_rows: ClassVar[bool] = True
    """Whether `floor_store` must be given the rows (False: the floor reads memweave's own)."""

    def provider(self, **extra: Any) -> ChatHistoryProvider:
        """A new memweave provider on this target."""
        return from_url(self.url, **self.options, **extra)

    @property
    def masked_url(self) -> str:
        """The URL without its password."""
        return mask_url(self.url)

    def spec(self) -> dict[str, Any]:
        """What a subprocess needs to rebuild this target (`make_target(**spec)`)."""
        return {"name": self.name, "url": self.url, "options": self.options, **self._extra_spec()}

    def _extra_spec(self) -> dict[str, Any]:
        return {}

    async def check(self) -> None:
        """Reach the backend once; raise a memweave error when it cannot be used."""
        history = self.provider()
        try:
            await history.count_messages(session_id(0))
        finally:
            await history.aclose()

    async def seed_sessions(self, history: ChatHistoryProvider, start: int, stop: int) -> None:
        """Store sessions `start` to `stop - 1`, each holding `SESSION_TEMPLATE`."""
        for index in range(start, stop):
            await history.add_messages(session_id(index), SESSION_TEMPLATE)

    async def seed_long_session(
        self, history: ChatHistoryProvider, session: str, batches: Iterable[list[Row]]
    ) -> None:
        """Store one long session batch after batch through `add_messages`; give the floor
        the same rows."""
        from memweave.bench._scale_export import as_messages

        for rows in batches:
            await history.add_messages(session, as_messages(rows))
            if self.floor_needs_rows:
                await self.floor_store(session, [data for _, _, data in rows])

    # -- floors: the raw client answering the same question -------------------------------

    @abstractmethod
    async def floor_sessions(self, start: int, stop: int) -> None:
        """Add ids `start` to `stop - 1` to the raw session index."""

    @abstractmethod
    async def floor_list(self, after: str, limit: int) -> list[str]:
        """The raw client's page: `limit` ids after `after`, in order."""

    @abstractmethod
    async def floor_info(self, session: str) -> object:
        """The raw client's point lookup of one session's record."""

    @abstractmethod
    async def floor_store(self, session: str, rows: Sequence[bytes]) -> None:
        """Give the raw client `rows` (encoded messages) of `session`, appended in order."""

    @abstractmethod
    async def floor_tail(self, session: str, count: int) -> list[Any]:
        """Read and decode the newest `count` rows of `session` with the raw client."""

    @abstractmethod
    def floor_pages(self, session: str, page_size: int) -> AsyncIterator[list[bytes]]:
        """Page through every row of `session`, oldest first, with the raw client."""

    @abstractmethod
    async def cleanup(self) -> None:
        """Remove what this run stored (tables, keys); release connections."""


@dataclass
class MemoryTarget(Target):
    """The in-process store; its floors are Python lists, `bisect` and a dict."""

    _ids: list[str] = field(default_factory=list)
    _rows: dict[str, list[bytes]] = field(default_factory=dict)

    async def floor_sessions(self, start: int, stop: int) -> None:
        self._ids.extend(session_id(index) for index in range(start, stop))

    async def floor_list(self, after: str, limit: int) -> list[str]:
        at = bisect.bisect_right(self._ids, after)
        return self._ids[at : at + limit]

    async def floor_info(self, session: str) -> object:
        at = bisect.bisect_left(self._ids, session)
        return self._ids[at] if at < len(self._ids) else None

    async def floor_store(self, session: str, rows: Sequence[bytes]) -> None:
        self._rows.setdefault(session, []).extend(rows)

    async def floor_tail(self, session: str, count: int) -> list[Any]:
        return [json.loads(row) for row in self._rows[session][-count:]]

    async def floor_pages(self, session: str, page_size: int) -> AsyncIterator[list[bytes]]:
        rows = self._rows.get(session, [])
        for start in range(0, len(rows), page_size):
            yield rows[start : start + page_size]

    async def cleanup(self) -> None:
        self._ids.clear()
        self._rows.clear()


def make_target(name: str, url: str, options: dict[str, Any] | None = None, **extra: Any) -> Target:
    """The target for backend `name` at `url`, under fresh names unless `options` give them."""
    from memweave.bench._scale_redis import RedisTarget
    from memweave.bench._scale_sql import SQLTarget

    run = uuid.uuid4().hex[:10]
    if name == "memory":
        return MemoryTarget(name, url, dict(options or {}))
    if name == "redis":
        options = options or {"namespace": f"memweave-bench-{run}"}
        return RedisTarget(name, url, dict(options), **extra)
    return SQLTarget(name, url, dict(options or {"namespace": f"mwb_{run}"}), **extra)
