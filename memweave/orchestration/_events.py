"""The events a handoff workflow yields, and the answers `run(responses=...)` takes.

`memweave.orchestration.handoff` re-exports every name here; this module keeps the event
models apart from the builder and the workflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, JsonValue

from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration._streaming import TextDelta, ToolCallDelta
from memweave.orchestration.checkpoints import ApprovalDecision

__all__ = [
    "AgentMessage",
    "Handoff",
    "Response",
    "StopReason",
    "TerminateRun",
    "ToolApprovalRequest",
    "UserInputRequest",
    "WorkflowEvent",
    "WorkflowOutput",
]

StopReason = Literal[
    "termination_condition", "user_terminated", "max_handoffs", "ping_pong", "ended"
]
"""Why a run ended with a `WorkflowOutput`; `ended`: an agent (or a tool's `Command`) routed
to `END`."""


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AgentMessage(_Event):
    """An agent wrote a message (its text, tool calls, or both)."""

    kind: Literal["agent_message"] = "agent_message"
    """Event discriminator."""
    agent: str
    """The agent's name."""
    message: ChatMessage
    """The assistant message, as stored."""
    team: tuple[str, ...] = ()
    """The nested teams the agent works in, outermost first (see `Team`); empty for the
    workflow's own participants."""

    @property
    def text(self) -> str:
        """The message's text."""
        return self.message.text


class Handoff(_Event):
    """Control passed from one agent to another (or back to the same one)."""

    kind: Literal["handoff"] = "handoff"
    """Event discriminator."""
    source: str
    """The agent that handed off."""
    target: str
    """The agent that took over."""
    reason: str = ""
    """Why, as the source's model wrote it."""
    task: str = ""
    """What the target should do, as the source's model wrote it."""
    automatic: bool = False
    """True when the workflow passed control by itself: a supervisor's worker answered and
    control went back to the supervisor, or on to the next worker it had been given."""
    team: tuple[str, ...] = ()
    """The nested teams the handoff happened in, outermost first; empty for the workflow's
    own participants."""


class TerminateRun(_Event):
    """The response to a `UserInputRequest` that ends the run instead of answering it."""

    kind: Literal["terminate"] = "terminate"
    """Event discriminator."""


class UserInputRequest(_Event):
    """The run paused: an agent answered without handing off and waits for the user.

    Answer on the same session, e.g.
    `workflow.run(session="case-17", responses={request.request_id: "text"})`, or end the run
    with `responses={request.request_id: request.terminate()}`.
    """

    kind: Literal["user_input_request"] = "user_input_request"
    """Event discriminator."""
    request_id: str
    """The id to answer under."""
    agent: str
    """The agent waiting for the user."""
    messages: tuple[ChatMessage, ...] = ()
    """What the agents said since the user's last message."""

    @staticmethod
    def terminate() -> TerminateRun:
        """Return the response that ends the run instead of answering."""
        return TerminateRun()


class ToolApprovalRequest(_Event):
    """The run paused: a call to an `approval="always"` tool needs a person's approval.

    Answer with `True`/`False`, `request.approve()` or `request.deny(reason)`; a denial
    reaches the model as the tool's result. A call made inside a nested team is asked for
    under the team's name (`agent`).
    """

    kind: Literal["tool_approval_request"] = "tool_approval_request"
    """Event discriminator."""
    request_id: str
    """The id to answer under."""
    agent: str
    """The agent (or nested team) that made the call."""
    tool_call: ToolCall
    """The call waiting for approval."""

    @staticmethod
    def approve(reason: str | None = None) -> ApprovalDecision:
        """Return the response that lets the call run."""
        return ApprovalDecision(approved=True, reason=reason)

    @staticmethod
    def deny(reason: str | None = None) -> ApprovalDecision:
        """Return the response that refuses the call; `reason` reaches the model."""
        return ApprovalDecision(approved=False, reason=reason)


class WorkflowOutput(_Event):
    """The run ended; no request is pending. A new `run(message)` continues the conversation."""

    kind: Literal["workflow_output"] = "workflow_output"
    """Event discriminator."""
    reason: StopReason
    """Why the run ended."""
    detail: str = ""
    """A sentence saying what happened, e.g. which limit was reached."""
    conversation: tuple[ChatMessage, ...] = ()
    """The whole conversation, as stored."""
    session_id: str
    """The history session holding the conversation."""
    answer: str = ""
    """The final answer when an agent ended the run (`reason="ended"`): the text of its
    last message, or else the `answer` it passed to `end_run` (or the result of the tool
    whose `Command` ended it), which is then stored as its message."""
    state: dict[str, JsonValue] | None = None
    """The shared state as JSON when the workflow has one (see `with_state`)."""


WorkflowEvent: TypeAlias = (
    AgentMessage
    | Handoff
    | UserInputRequest
    | ToolApprovalRequest
    | WorkflowOutput
    | TextDelta
    | ToolCallDelta
)
"""Everything `HandoffWorkflow.run` yields (`TextDelta` and `ToolCallDelta` only with
`run(..., stream=True)`: fragments of a model's reply as it is written, before the step's
`AgentMessage`; their `session_id` is the workflow's session, or the sub-session of a nested
team or of an agent called as a tool)."""

Response: TypeAlias = (
    str | ChatMessage | Sequence[ChatMessage] | TerminateRun | ApprovalDecision | bool
)
"""An answer in `run(responses=...)`: user input (text, messages, or `terminate()`) for a
`UserInputRequest`; `bool` or `ApprovalDecision` for a `ToolApprovalRequest`."""
