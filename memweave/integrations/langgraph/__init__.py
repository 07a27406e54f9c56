"""LangGraph on memweave: `MemweaveCheckpointSaver`, a checkpointer on memweave's SQL and Redis
backends.

`MemweaveCheckpointSaver` is a LangGraph `BaseCheckpointSaver` with every capability of
langgraph-checkpoint (`put`, `put_writes`, `get_tuple`, `list`, `delete_thread`,
`delete_for_runs`, `copy_thread`, `prune`; blocking and `a`-prefixed async), stored in
SQLite, PostgreSQL, MariaDB/MySQL, Redis or a Redis Cluster:

```python
from memweave.integrations.langgraph import MemweaveCheckpointSaver

async with MemweaveCheckpointSaver.from_url("postgresql+asyncpg://user@host/db") as saver:
    graph = builder.compile(checkpointer=saver)
```

`MemweaveStore` is a LangGraph `BaseStore` (long-term memory: namespaced JSON items, filters,
hybrid lexical and dense search, TTL) on the same backends:
`builder.compile(checkpointer=saver, store=MemweaveStore.from_url(url))`.

This is the only memweave package that imports langgraph; without it, importing this package
raises `MissingDependency` naming the extra. Install with `pip install 'memweave[langgraph]'`.
"""

from __future__ import annotations

from memweave.integrations.langgraph._records import CorruptCheckpoint
from memweave.integrations.langgraph._saver import MemweaveCheckpointSaver
from memweave.integrations.langgraph._saver_codec import safe_serializer
from memweave.integrations.langgraph._store import CorruptItem, InvalidNamespace, MemweaveStore

__all__ = [
    "CorruptCheckpoint",
    "CorruptItem",
    "InvalidNamespace",
    "MemweaveCheckpointSaver",
    "MemweaveStore",
    "safe_serializer",
]
