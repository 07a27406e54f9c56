"""Orchestration on the memory layer: tools, `Agent`, sequential chats, handoff workflows.

Every orchestrator stores its conversation once, in one `ChatHistoryProvider`, and gives each
agent a view of it. `SQLCheckpointStore` and `RedisCheckpointStore` are imported on first use,
so their drivers are needed only when they are used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from memweave.orchestration._agent_tool import PARENT_KEY, SUB_SESSION_KEY, sub_session_id
from memweave.orchestration._state import END, Command, InjectedState
from memweave.orchestration._streaming import (
    AgentEvent,
    AgentStream,
    ReplyEvent,
    ResponseEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallEvent,
    ToolResultEvent,
)
from memweave.orchestration._team import Team
from memweave.orchestration.agent import Agent, AgentInput, AgentResponse, ApprovalCallback
from memweave.orchestration.checkpoints import (
    ApprovalDecision,
    Checkpoint,
    CheckpointStore,
    InMemoryCheckpointStore,
    PendingHandoff,
    PendingRequest,
    checkpoint_store_from_url,
)
from memweave.orchestration.handoff import (
    AgentMessage,
    Handoff,
    HandoffBuilder,
    HandoffWorkflow,
    TerminateRun,
    ToolApprovalRequest,
    UserInputRequest,
    WorkflowEvent,
    WorkflowOutput,
)
from memweave.orchestration.sequential import (
    ChatResult,
    ChatSpec,
    Sequential,
    initiate_chats,
)
from memweave.orchestration.tools import (
    Approval,
    Tool,
    ToolArgumentsInvalid,
    run_tool_call,
    run_tool_calls,
    tool,
)

if TYPE_CHECKING:
    from memweave.orchestration._checkpoints_redis import RedisCheckpointStore
    from memweave.orchestration._checkpoints_sql import SQLCheckpointStore

__all__ = [
    "END",
    "PARENT_KEY",
    "SUB_SESSION_KEY",
    "Agent",
    "AgentEvent",
    "AgentInput",
    "AgentMessage",
    "AgentResponse",
    "AgentStream",
    "Approval",
    "ApprovalCallback",
    "ApprovalDecision",
    "ChatResult",
    "ChatSpec",
    "Checkpoint",
    "CheckpointStore",
    "Command",
    "Handoff",
    "HandoffBuilder",
    "HandoffWorkflow",
    "InMemoryCheckpointStore",
    "InjectedState",
    "PendingHandoff",
    "PendingRequest",
    "RedisCheckpointStore",
    "ReplyEvent",
    "ResponseEvent",
    "SQLCheckpointStore",
    "Sequential",
    "Team",
    "TerminateRun",
    "TextDelta",
    "Tool",
    "ToolApprovalRequest",
    "ToolArgumentsInvalid",
    "ToolCallDelta",
    "ToolCallEvent",
    "ToolResultEvent",
    "UserInputRequest",
    "WorkflowEvent",
    "WorkflowOutput",
    "checkpoint_store_from_url",
    "initiate_chats",
    "run_tool_call",
    "run_tool_calls",
    "sub_session_id",
    "tool",
]

_LAZY = {
    "SQLCheckpointStore": "memweave.orchestration._checkpoints_sql",
    "RedisCheckpointStore": "memweave.orchestration._checkpoints_redis",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
