"""The blocking face of memweave: the same names, arguments, results and errors, as plain calls.

For code without an event loop (a Flask or Django view, a script, a Celery task): every
class here wraps the async object of the same name and runs its coroutines on one private
event loop, on a daemon thread of the process (the portal). No backend logic lives here, so
the two faces keep the same contract and the same errors.

```python
from memweave import ChatMessage, sync

history = sync.from_url("sqlite+aiosqlite:///chat.db", max_messages=500)
history.add_messages("s1", [ChatMessage.user("hi")])
print(history.list_messages("s1", limit=20))
history.close()
```

Rules:

- One blocking object serves every thread of the process; calls from several threads run
  concurrently on the portal loop, as tasks of one loop would.
- Inside a running event loop (an `async def`, a notebook cell) every blocking call raises
  `SyncCallInEventLoop` at once, naming the coroutine to await instead; it never blocks.
- `close()` (or leaving a `with` block) releases what the object holds; any later call
  raises `ProviderClosed`.
- An object belongs to one face. The async object behind a blocking one lives on the
  portal loop; never hand it to your own loop. Blocking objects may be passed wherever this
  module takes a component (an `Agent`'s `history=`, a provider's `reducer=`, ...).
- A process forked after first use (gunicorn's `--preload`) starts its own portal in the
  child; build the objects after the fork, or at least use them only in the child.

The names (each drives the async object of the same name):

- history (`memweave.providers`): `from_url`, `ChatHistoryProvider`,
  `InMemoryChatHistoryProvider`, `SQLChatHistoryProvider`, `RedisChatHistoryProvider`,
  `ChromaChatHistoryProvider`;
- reducers (`memweave.reducers`): `ChatReducer`, `MessageCountReducer`, `TokenBudgetReducer`,
  `SummarizingReducer`;
- long-term memory (`memweave.context`): `ContextProvider`, `VectorMemory`;
- orchestration (`memweave.orchestration`): `Agent`, `ChatSpec`, `initiate_chats`,
  `Sequential`, `HandoffBuilder`, `HandoffWorkflow`, and the checkpoint stores
  `CheckpointStore`, `InMemoryCheckpointStore`, `SQLCheckpointStore`,
  `RedisCheckpointStore`, `checkpoint_store_from_url`.

Backends with optional drivers are imported on first use, as in `memweave.providers`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from memweave.errors import SyncCallInEventLoop
from memweave.sync._checkpoints import (
    CheckpointStore,
    InMemoryCheckpointStore,
    checkpoint_store_from_url,
)
from memweave.sync._context import ContextProvider, VectorMemory
from memweave.sync._history import ChatHistoryProvider, InMemoryChatHistoryProvider, from_url
from memweave.sync._orchestration import (
    Agent,
    ChatSpec,
    HandoffBuilder,
    HandoffWorkflow,
    Sequential,
    initiate_chats,
)
from memweave.sync._reducers import (
    ChatReducer,
    MessageCountReducer,
    SummarizingReducer,
    TokenBudgetReducer,
)

if TYPE_CHECKING:
    from memweave.sync._chroma import ChromaChatHistoryProvider
    from memweave.sync._redis import RedisChatHistoryProvider, RedisCheckpointStore
    from memweave.sync._sql import SQLChatHistoryProvider, SQLCheckpointStore

__all__ = [
    "Agent",
    "ChatHistoryProvider",
    "ChatReducer",
    "ChatSpec",
    "CheckpointStore",
    "ChromaChatHistoryProvider",
    "ContextProvider",
    "HandoffBuilder",
    "HandoffWorkflow",
    "InMemoryChatHistoryProvider",
    "InMemoryCheckpointStore",
    "MessageCountReducer",
    "RedisChatHistoryProvider",
    "RedisCheckpointStore",
    "SQLChatHistoryProvider",
    "SQLCheckpointStore",
    "Sequential",
    "SummarizingReducer",
    "SyncCallInEventLoop",
    "TokenBudgetReducer",
    "VectorMemory",
    "checkpoint_store_from_url",
    "from_url",
    "initiate_chats",
]

_LAZY = {
    "SQLChatHistoryProvider": "memweave.sync._sql",
    "SQLCheckpointStore": "memweave.sync._sql",
    "RedisChatHistoryProvider": "memweave.sync._redis",
    "RedisCheckpointStore": "memweave.sync._redis",
    "ChromaChatHistoryProvider": "memweave.sync._chroma",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
