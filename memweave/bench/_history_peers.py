"""The stores users compare memweave's history with, driven through their own async APIs.

`memweave.bench.history` times each one beside memweave on the same server: every peer here
writes one fresh session of messages converted from memweave's before timing, and its
`teardown` deletes exactly what it wrote. Why these: Agent Framework's `RedisHistoryProvider`
(agent-framework-redis) and LangChain's `RedisChatMessageHistory` and `SQLChatMessageHistory`
(langchain-community). langchain-redis has a `RedisChatMessageHistory` too, but it needs the
Redis Query Engine (Redis Stack or Redis 8), and it is deprecated like langchain-community's.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Sequence
from typing import Any

from memweave import ChatMessage

__all__ = ["PEERS", "Peer", "load_peers", "storage_kind"]

PEERS_EXTRA = "pip install 'memweave[peers]'"
# agent-framework-redis pins redis<7.2.1, which would downgrade memweave's own redis-py, so it
# is not in the `peers` extra; it runs fine beside redis-py 8 when installed by hand.
AGENT_FRAMEWORK_REDIS = "pip install agent-framework-redis; it pins redis<7.2.1"
_READ_ALL_FOR_LAST = "no limit in its API: reads all"


class Peer:
    """One peer store on one fresh session, doing memweave's work through its own API.

    Every Redis key a peer writes contains its `session`, a fresh uuid.
    """

    name = ""
    """What users know it as, such as `LangChain SQLChatMessageHistory`."""
    short = ""
    """A short label for narrow tables."""
    package = ""
    """The distribution it comes from, whose version the results record."""
    install = PEERS_EXTRA
    """How to install it, for the note printed when it is missing."""
    notes: tuple[str, ...] = ()
    """How it works, where that explains its figures."""
    operation_notes: dict[str, str] = {"read_last_20": _READ_ALL_FOR_LAST}
    """How one operation's call differs from memweave's."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = f"memweave-bench-peer-{uuid.uuid4().hex}"

    def convert(self, messages: Sequence[ChatMessage]) -> list[Any]:
        """The peer's own message objects for `messages` (done before timing)."""
        raise NotImplementedError

    async def append(self, messages: list[Any]) -> None:
        raise NotImplementedError

    async def read_all(self) -> list[Any]:
        raise NotImplementedError

    async def read_last(self, n: int) -> list[Any]:
        """The last `n` messages; none of the peers can ask for fewer than all of them."""
        return (await self.read_all())[-n:]

    async def teardown(self) -> None:
        """Delete what this peer wrote and close what it opened."""
        raise NotImplementedError


class AgentFrameworkRedis(Peer):
    name = "Agent Framework RedisHistoryProvider"
    short = "agent-framework"
    package = "agent-framework-redis"
    install = AGENT_FRAMEWORK_REDIS
    notes = (
        "each append first reads and decodes the whole session, to drop messages it already "
        "holds (filter_new_messages), then RPUSHes the new ones in one transaction",
    )

    def __init__(self, url: str) -> None:
        from agent_framework_redis import RedisHistoryProvider

        from memweave.integrations.agent_framework import messages_from_memweave

        super().__init__(url)
        self._convert = messages_from_memweave
        self.provider = RedisHistoryProvider(
            redis_url=url, key_prefix="memweave-bench-peer", application_id="memweave-bench"
        )

    def convert(self, messages: Sequence[ChatMessage]) -> list[Any]:
        return self._convert(messages)

    async def append(self, messages: list[Any]) -> None:
        await self.provider.save_messages(self.session, messages)

    async def read_all(self) -> list[Any]:
        return list(await self.provider.get_messages(self.session))

    async def teardown(self) -> None:
        try:
            await self.provider.clear(self.session)
        finally:
            await self.provider.aclose()


class _LangChain(Peer):
    """A LangChain `BaseChatMessageHistory`, through its async methods."""

    package = "langchain-community"
    short = "langchain"

    def __init__(self, url: str) -> None:
        from memweave.integrations.langchain import messages_from_memweave

        # Importing it warns that langchain-community is being sunset; the notes say so.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from langchain_community import chat_message_histories

        super().__init__(url)
        self._convert = messages_from_memweave
        self.histories = chat_message_histories
        self.history: Any = None

    def convert(self, messages: Sequence[ChatMessage]) -> list[Any]:
        return list(self._convert(messages))

    async def append(self, messages: list[Any]) -> None:
        await self.history.aadd_messages(messages)

    async def read_all(self) -> list[Any]:
        result: list[Any] = await self.history.aget_messages()
        return result


class LangChainRedis(_LangChain):
    name = "LangChain RedisChatMessageHistory"
    notes = (
        "langchain-community is being sunset; its Redis history uses a sync redis-py client, "
        "and its async methods run the sync ones in a thread pool",
        "one LPUSH per message, so a batch of 10 makes 10 round trips",
    )
    operation_notes = {"append_10": "10 LPUSH round trips", "read_last_20": _READ_ALL_FOR_LAST}

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.history = self.histories.RedisChatMessageHistory(
            self.session, url=url, key_prefix="memweave-bench-peer-langchain:"
        )

    async def teardown(self) -> None:
        try:
            await self.history.aclear()
        finally:
            self.history.redis_client.close()


class LangChainSQL(_LangChain):
    name = "LangChain SQLChatMessageHistory"
    notes = (
        "langchain-community is being sunset; its SQL history runs on an async engine here "
        "(aadd_messages, aget_messages), one ORM transaction per call",
        "its table has no index on session_id; this run's table holds only its own session",
    )

    def __init__(self, url: str) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        super().__init__(url)
        self.table = f"memweave_bench_peer_{uuid.uuid4().hex[:8]}"
        self.engine = create_async_engine(url)
        self.history = self.histories.SQLChatMessageHistory(
            self.session, table_name=self.table, connection=self.engine
        )

    async def teardown(self) -> None:
        try:
            # The table was made for this peer alone (its name is random), so it goes whole.
            async with self.engine.begin() as conn:
                await conn.run_sync(self.history.sql_model_class.metadata.drop_all)
        finally:
            await self.engine.dispose()


PEERS: dict[str, tuple[type[Peer], ...]] = {
    "redis": (AgentFrameworkRedis, LangChainRedis),
    "sql": (LangChainSQL,),
}
"""The peers of each kind of storage, in the order they are timed and reported."""


def storage_kind(url: str) -> str | None:
    """`redis` (standalone), `sql`, or None for a URL with no floor and no peers."""
    scheme = url.split("://", 1)[0]
    if scheme in ("redis", "rediss"):
        return "redis"
    if scheme.startswith(("sqlite", "postgresql", "mysql", "mariadb")):
        return "sql"
    return None


def load_peers(url: str) -> tuple[list[Peer], dict[type[Peer], str]]:
    """Fresh peers for `url`, and why each one that could not be loaded was skipped."""
    peers: list[Peer] = []
    skipped: dict[type[Peer], str] = {}
    for cls in PEERS.get(storage_kind(url) or "", ()):
        try:
            peers.append(cls(url))
        except ImportError as exc:
            missing = getattr(exc, "package", None) or exc.name or str(exc)
            skipped[cls] = f"{missing} is not installed ({cls.install})"
    return peers, skipped
