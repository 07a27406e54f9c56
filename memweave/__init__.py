"""memweave: pluggable chat history, long-term memory and reducers for LLM agents."""

from memweave.errors import (
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
    CorruptRecord,
    EventLoopMismatch,
    InvalidArgument,
    InvalidMessage,
    InvalidSessionId,
    MemweaveError,
    MessageTooLarge,
    MissingDependency,
    ModelError,
    ModelHTTPError,
    ModelUnavailable,
    ProviderClosed,
    SchemaMismatch,
    SessionChanged,
    SyncCallInEventLoop,
)
from memweave.llm import ChatClient, ChatResponse, OpenAIChatClient, StreamingChatClient, Usage
from memweave.messages import ChatMessage, ContentPart, Role, ToolCall
from memweave.providers import (
    ChatHistoryProvider,
    InMemoryChatHistoryProvider,
    SessionInfo,
    from_url,
)
from memweave.reducers import (
    ChatReducer,
    MessageCountReducer,
    SummarizingReducer,
    TokenBudgetReducer,
    TokenCounter,
)
from memweave.session import Session

__version__ = "0.1.0"

__all__ = [
    "BackendTimeout",
    "BackendUnavailable",
    "ChatClient",
    "ChatHistoryProvider",
    "ChatMessage",
    "ChatReducer",
    "ChatResponse",
    "ConfigurationError",
    "ContentPart",
    "CorruptRecord",
    "EventLoopMismatch",
    "InMemoryChatHistoryProvider",
    "InvalidArgument",
    "InvalidMessage",
    "InvalidSessionId",
    "MemweaveError",
    "MessageCountReducer",
    "MessageTooLarge",
    "MissingDependency",
    "ModelError",
    "ModelHTTPError",
    "ModelUnavailable",
    "OpenAIChatClient",
    "ProviderClosed",
    "Role",
    "SchemaMismatch",
    "Session",
    "SessionChanged",
    "SessionInfo",
    "StreamingChatClient",
    "SummarizingReducer",
    "SyncCallInEventLoop",
    "TokenBudgetReducer",
    "TokenCounter",
    "ToolCall",
    "Usage",
    "__version__",
    "from_url",
]
