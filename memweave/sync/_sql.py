"""Blocking faces of the SQL backends: `SQLChatHistoryProvider` and `SQLCheckpointStore`."""

from __future__ import annotations

from typing import Any

from memweave.orchestration import _checkpoints_sql
from memweave.providers import sql as _sql
from memweave.sync._checkpoints import CheckpointStore
from memweave.sync._history import ChatHistoryProvider
from memweave.sync._wrap import mirrors

__all__ = ["SQLChatHistoryProvider", "SQLCheckpointStore"]


class SQLChatHistoryProvider(ChatHistoryProvider):
    """Blocking face of `memweave.providers.SQLChatHistoryProvider` (SQLite, PostgreSQL,
    MariaDB/MySQL through SQLAlchemy). Takes the same arguments; the engine and its pool live
    on memweave's portal loop, so pass a URL rather than a `client` you use elsewhere.

    Example:
        ```python
        from memweave import ChatMessage, sync

        with sync.SQLChatHistoryProvider("sqlite+aiosqlite:///chat.db") as history:
            history.add_messages("s1", [ChatMessage.user("hi")])
        ```
    """

    _wraps = _sql.SQLChatHistoryProvider
    _async: _sql.SQLChatHistoryProvider

    @mirrors(_sql.SQLChatHistoryProvider)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._build(_sql.SQLChatHistoryProvider, args, kwargs)

    @property
    def namespace(self) -> str:
        """The name this provider's data lives under."""
        return self._async.namespace


class SQLCheckpointStore(CheckpointStore):
    """Blocking face of `memweave.orchestration.SQLCheckpointStore`. Takes the same
    arguments."""

    _wraps = _checkpoints_sql.SQLCheckpointStore
    _async: _checkpoints_sql.SQLCheckpointStore

    @mirrors(_checkpoints_sql.SQLCheckpointStore)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._build(_checkpoints_sql.SQLCheckpointStore, args, kwargs)

    @property
    def namespace(self) -> str:
        """The name this store's data lives under."""
        return self._async.namespace
