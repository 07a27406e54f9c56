"""Handoff workflows: agents pass one conversation between them with `handoff_to_<name>` tools.

`HandoffBuilder` sets up who may hand off to whom, autonomous mode, limits, a termination
condition and checkpointing; `HandoffWorkflow.run` yields events (`AgentMessage`, `Handoff`,
`UserInputRequest`, `ToolApprovalRequest`, `WorkflowOutput`) and pauses when a person must
answer. The conversation is stored once, in one `ChatHistoryProvider`; each agent sees all
user and agent text plus only its own tool calls. Every step is stored and checkpointed
before its events are yielded, so a run resumes in another process: a failed model call is
re-run on resume, and a step that was stored but not checkpointed is completed, not re-run.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, Self, TypeAlias

from pydantic import BaseModel, ConfigDict

from memweave.errors import InvalidArgument
from memweave.messages import ChatMessage, ToolCall
from memweave.orchestration._runtime import AgentInput
from memweave.orchestration.agent import Agent
from memweave.orchestration.checkpoints import (
    ApprovalDecision,
    CheckpointStore,
    InMemoryCheckpointStore,
)
from memweave.orchestration.tools import Tool
from memweave.providers.base import ChatHistoryProvider
from memweave.providers.memory import InMemoryChatHistoryProvider
from memweave.session import Session

__all__ = [
    "DEFAULT_AUTONOMOUS_PROMPT",
    "DEFAULT_TURN_LIMIT",
    "HANDOFF_TOOL_PREFIX",
    "AgentMessage",
    "ApprovalDecision",
    "Handoff",
    "HandoffBuilder",
    "HandoffWorkflow",
    "Response",
    "StopReason",
    "TerminateRun",
    "TerminationCondition",
    "ToolApprovalRequest",
    "UserInputRequest",
    "WorkflowEvent",
    "WorkflowOutput",
]

HANDOFF_TOOL_PREFIX = "handoff_to_"
"""Handoff tools are named `handoff_to_<agent name>`; no other tool may use the prefix."""

DEFAULT_AUTONOMOUS_PROMPT = "User did not respond. Continue assisting autonomously."
"""The user turn an autonomous agent receives instead of waiting for the user."""

DEFAULT_TURN_LIMIT = 50
"""Continue prompts an autonomous agent receives, per user message, before it asks the user."""

TerminationCondition: TypeAlias = Callable[[list[ChatMessage]], bool | Awaitable[bool]]
"""Called with the whole conversation after every stored step; True ends the run."""

StopReason = Literal["termination_condition", "user_terminated", "max_handoffs", "ping_pong"]
"""Why a run ended with a `WorkflowOutput`."""


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

    @property
    def text(self) -> str:
        """The message's text."""
        return self.message.text


class Handoff(_Event):
    """Control passed from one agent to another."""

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


class TerminateRun(_Event):
    """The response to a `UserInputRequest` that ends the run instead of answering it."""

    kind: Literal["terminate"] = "terminate"
    """Event discriminator."""


class UserInputRequest(_Event):
    """The run paused: an agent answered without handing off and waits for the user.

    Answer with `workflow.run(responses={request.request_id: "text"})`, or end the run with
    `responses={request.request_id: request.terminate()}`.
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
    reaches the model as the tool's result.
    """

    kind: Literal["tool_approval_request"] = "tool_approval_request"
    """Event discriminator."""
    request_id: str
    """The id to answer under."""
    agent: str
    """The agent that made the call."""
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


WorkflowEvent: TypeAlias = (
    AgentMessage | Handoff | UserInputRequest | ToolApprovalRequest | WorkflowOutput
)
"""Everything `HandoffWorkflow.run` yields."""

Response: TypeAlias = (
    str | ChatMessage | Sequence[ChatMessage] | TerminateRun | ApprovalDecision | bool
)
"""An answer in `run(responses=...)`: user input (text, messages, or `terminate()`) for a
`UserInputRequest`; `bool` or `ApprovalDecision` for a `ToolApprovalRequest`."""

AgentRef: TypeAlias = Agent | str


def _handoff_tool(target: Agent, description: str) -> Tool[..., Any]:
    async def handoff(
        reason: Annotated[str, "Why you hand the conversation over, in one sentence."] = "",
        task: Annotated[str, "What the other agent should do next."] = "",
    ) -> str:
        """Hand the conversation over (the workflow intercepts the call)."""
        return f"Handed off to {target.name}."

    return Tool(handoff, name=f"{HANDOFF_TOOL_PREFIX}{target.name}", description=description)


class HandoffBuilder:
    """Builds a `HandoffWorkflow`: participants, routes, autonomy, limits, checkpoints.

    By default every participant may hand off to every other, the first participant starts,
    agents ask the user whenever they answer without handing off, and checkpoints are kept
    in memory.

    Args:
        name: The workflow's name; checkpoints are kept per `(name, session)`.
        participants: The agents (at least two, unique names).
        history: Where the conversation is stored; a new in-memory provider when None.
        termination_condition: Called with the whole conversation after every stored step
            (sync or async); True ends the run with a `WorkflowOutput`.

    Raises:
        InvalidArgument: A bad name, fewer than two agents, duplicate names, or a tool
            named with the reserved `handoff_to_` prefix.

    Example:
        ```python
        workflow = (
            HandoffBuilder("support", [triage, refunds, orders])
            .add_handoff(triage, [refunds, orders])
            .add_handoff([refunds, orders], triage)
            .with_checkpointing(SQLCheckpointStore("sqlite+aiosqlite:///chat.db"))
            .build()
        )
        async for event in workflow.run("My order arrived broken"):
            ...
        ```
    """

    def __init__(
        self,
        name: str,
        participants: Sequence[Agent],
        *,
        history: ChatHistoryProvider | None = None,
        termination_condition: TerminationCondition | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise InvalidArgument("name", name, "a workflow name is a non-empty str of <= 255")
        if isinstance(participants, Agent) or not isinstance(participants, Sequence):
            raise InvalidArgument("participants", participants, "expected a sequence of agents")
        if len(participants) < 2:
            raise InvalidArgument("participants", participants, "a handoff needs two agents")
        agents: dict[str, Agent] = {}
        for agent in participants:
            if not isinstance(agent, Agent):
                raise InvalidArgument("participants", agent, "expected an Agent")
            if agent.name in agents:
                raise InvalidArgument("participants", agent.name, "two agents share this name")
            for own in agent.tools:
                if own.name.startswith(HANDOFF_TOOL_PREFIX):
                    raise InvalidArgument(
                        "participants",
                        own.name,
                        f"tool names starting with {HANDOFF_TOOL_PREFIX!r} are reserved for "
                        f"handoffs (agent {agent.name!r})",
                    )
            agents[agent.name] = agent
        if history is not None and not isinstance(history, ChatHistoryProvider):
            raise InvalidArgument("history", history, "expected a ChatHistoryProvider or None")
        if termination_condition is not None and not callable(termination_condition):
            raise InvalidArgument(
                "termination_condition", termination_condition, "expected a function"
            )
        self._name = name
        self._agents = agents
        self._history = history
        self._termination = termination_condition
        self._start = next(iter(agents))
        self._routes: dict[str, dict[str, str | None]] | None = None
        self._autonomous: dict[str, tuple[str, int]] = {}
        self._max_handoffs: int | None = None
        self._store: CheckpointStore | None = None
        self._ping_pong = True

    def _resolve(self, ref: AgentRef, what: str) -> str:
        name = ref.name if isinstance(ref, Agent) else ref
        if not isinstance(name, str) or name not in self._agents:
            raise InvalidArgument(
                what, name, f"not a participant; participants: {', '.join(self._agents)}"
            )
        if isinstance(ref, Agent) and ref is not self._agents[name]:
            raise InvalidArgument(what, name, "a different agent object has this name")
        return name

    def _resolve_many(self, refs: AgentRef | Sequence[AgentRef], what: str) -> list[str]:
        if isinstance(refs, Agent | str):
            return [self._resolve(refs, what)]
        return [self._resolve(ref, what) for ref in refs]

    def with_start_agent(self, agent: AgentRef) -> Self:
        """Let `agent` answer first (default: the first participant)."""
        self._start = self._resolve(agent, "agent")
        return self

    def add_handoff(
        self,
        source: AgentRef | Sequence[AgentRef],
        targets: AgentRef | Sequence[AgentRef],
        description: str | None = None,
    ) -> Self:
        """Allow `source` (one agent or several) to hand off to each of `targets`.

        Once any route is added, only added routes exist. `description` describes the handoff
        tool to the source's model; by default the target's `description` is used.

        Raises:
            InvalidArgument: An agent is not a participant, or a route points to itself.
        """
        if description is not None and not isinstance(description, str):
            raise InvalidArgument("description", description, "must be a str or None")
        sources = self._resolve_many(source, "source")
        names = self._resolve_many(targets, "targets")
        routes = self._routes if self._routes is not None else {}
        for src in sources:
            for target in names:
                if target == src:
                    raise InvalidArgument("targets", target, "an agent cannot hand off to itself")
                routes.setdefault(src, {})[target] = description
        self._routes = routes
        return self

    def with_autonomous_mode(
        self,
        agents: Sequence[AgentRef] | None = None,
        prompts: str | Mapping[str, str] | None = None,
        turn_limits: int | Mapping[str, int] | None = None,
    ) -> Self:
        """Let agents continue on their own instead of asking the user.

        An autonomous agent that answers without handing off receives a continue prompt as
        the next user turn, up to its turn limit per user message; then it asks the user.

        Args:
            agents: The autonomous agents; None means all.
            prompts: The continue prompt, for all or per agent name (default
                `DEFAULT_AUTONOMOUS_PROMPT`).
            turn_limits: The limit, for all or per agent name (default `DEFAULT_TURN_LIMIT`).
        """
        chosen = list(self._agents) if agents is None else self._resolve_many(agents, "agents")
        for name in chosen:
            prompt = prompts if isinstance(prompts, str) else (prompts or {}).get(name)
            limit = turn_limits if isinstance(turn_limits, int) else (turn_limits or {}).get(name)
            prompt = DEFAULT_AUTONOMOUS_PROMPT if prompt is None else prompt
            limit = DEFAULT_TURN_LIMIT if limit is None else limit
            if not isinstance(prompt, str) or not prompt.strip():
                raise InvalidArgument("prompts", prompt, f"the prompt for {name!r} is empty")
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise InvalidArgument("turn_limits", limit, "must be a positive int")
            self._autonomous[name] = (prompt, limit)
        for mapping, what in ((prompts, "prompts"), (turn_limits, "turn_limits")):
            if isinstance(mapping, Mapping):
                unknown = sorted(set(mapping) - set(chosen))
                if unknown:
                    raise InvalidArgument(what, unknown[0], "not an autonomous agent")
        return self

    def with_max_handoffs(self, max_handoffs: int) -> Self:
        """Stop the run (with a `WorkflowOutput`) instead of handing off more than
        `max_handoffs` times after one user message."""
        if isinstance(max_handoffs, bool) or not isinstance(max_handoffs, int) or max_handoffs < 0:
            raise InvalidArgument("max_handoffs", max_handoffs, "must be an int >= 0")
        self._max_handoffs = max_handoffs
        return self

    def with_ping_pong_guard(self, enabled: bool = True) -> Self:
        """Stop the run when two agents bounce the conversation between them. On by default.

        With no user message between, the guard refuses (and ends the run with
        `reason="ping_pong"`):

        - a repeated bounce, A -> B -> A -> B: A hands to B a second time after B handed
          it back;
        - a bare hand-back, A -> B -> A where B wrote no text since it took over.

        A hand-back in which B says something (say, a tutor explaining that the question
        belongs to another tutor) is allowed, so A can route the conversation again
        (triage -> math -> triage -> history).
        """
        self._ping_pong = bool(enabled)
        return self

    def with_checkpointing(self, store: CheckpointStore) -> Self:
        """Keep checkpoints in `store` (e.g. SQL or Redis), so runs resume in another process."""
        if not isinstance(store, CheckpointStore):
            raise InvalidArgument("store", store, "expected a CheckpointStore")
        self._store = store
        return self

    def build(self) -> HandoffWorkflow:
        """Return the workflow. The builder can go on being changed without affecting it."""
        routes: dict[str, dict[str, Tool[..., Any]]] = {}
        for source in self._agents:
            targets: Mapping[str, str | None]
            if self._routes is None:
                targets = {name: None for name in self._agents if name != source}
            else:
                targets = self._routes.get(source, {})
            routes[source] = {
                f"{HANDOFF_TOOL_PREFIX}{target}": _handoff_tool(
                    self._agents[target],
                    description
                    or self._agents[target].description
                    or f"Hand the conversation over to {target}.",
                )
                for target, description in targets.items()
            }
        return HandoffWorkflow(
            name=self._name,
            agents=dict(self._agents),
            start=self._start,
            routes=routes,
            history=self._history if self._history is not None else InMemoryChatHistoryProvider(),
            checkpoints=self._store if self._store is not None else InMemoryCheckpointStore(),
            termination_condition=self._termination,
            autonomous=dict(self._autonomous),
            max_handoffs=self._max_handoffs,
            ping_pong_guard=self._ping_pong,
        )


class HandoffWorkflow:
    """A built handoff workflow; `run` drives it and yields its events.

    Build it with `HandoffBuilder`. One workflow serves many sessions; run one session at a
    time. State lives in the history provider and the checkpoint store, never in this object,
    so a workflow built the same way in another process resumes any session.
    """

    def __init__(
        self,
        *,
        name: str,
        agents: dict[str, Agent],
        start: str,
        routes: dict[str, dict[str, Tool[..., Any]]],
        history: ChatHistoryProvider,
        checkpoints: CheckpointStore,
        termination_condition: TerminationCondition | None,
        autonomous: dict[str, tuple[str, int]],
        max_handoffs: int | None,
        ping_pong_guard: bool,
    ) -> None:
        self.name = name
        """The workflow's name."""
        self.agents: Mapping[str, Agent] = agents
        """The participants by name."""
        self.start_agent = start
        """The agent that answers first."""
        self.history = history
        """Where the conversation is stored."""
        self.checkpoints = checkpoints
        """Where checkpoints are kept."""
        self.session_id = uuid.uuid4().hex
        """The session `run` uses when given none."""
        self._routes = routes
        self._termination = termination_condition
        self._autonomous = autonomous
        self._max_handoffs = max_handoffs
        self._ping_pong = ping_pong_guard

    def routes(self) -> dict[str, list[str]]:
        """Return who may hand off to whom: source name to target names."""
        return {
            source: [name.removeprefix(HANDOFF_TOOL_PREFIX) for name in tools]
            for source, tools in self._routes.items()
        }

    def run(
        self,
        message: AgentInput | None = None,
        *,
        responses: Mapping[str, Response] | None = None,
        session: Session | str | None = None,
        checkpoint_id: str | None = None,
    ) -> AsyncIterator[WorkflowEvent]:
        """Drive the workflow and yield its events until it pauses or ends.

        - `run(message)`: the user says something; the agent in control answers.
        - `run(responses={request_id: answer})`: answer pending requests (see `Response`).
        - `run()`: resume from the latest checkpoint: re-run a step that failed, or yield the
          pending requests again.

        A run pauses after yielding `UserInputRequest`s or `ToolApprovalRequest`s, and ends
        with a `WorkflowOutput` when it stops (termination condition, limits, terminate).

        Each step (a model reply with its tool results) is stored as one batch and its
        checkpoint saved before the step's events are yielded and the providers' `invoked`
        called. So a consumer may stop reading at any event, and the run may be cancelled
        or fail afterwards (a provider's `invoked` raising, say): the step stays done and
        its requests pending. Errors (a failed model call, an unreachable store) reach the
        caller unchanged, and the last checkpoint still says what comes next, so `run()`
        retries it. When the messages of a step were stored but its checkpoint could not be
        saved, the next `run()` (or `pending_requests()`) completes that step from the
        stored messages without calling the model or running a tool again, yielding its
        events then. Retrying the same `run(message)` or `run(responses=...)` after such a
        failure does not store the input or run the approved tools twice.

        Resuming an older checkpoint with `checkpoint_id` is allowed only while no message
        was stored after it (e.g. the checkpoint before a partial answer to approvals). A
        stored conversation is never rewound: once it has moved on, `InvalidArgument` is
        raised and nothing is run or stored; go on from the latest checkpoint, or start a
        new session.

        Args:
            message: A user text, a message, or messages.
            responses: Answers to pending requests, by request id; answers may come a few at
                a time (the others are yielded again).
            session: The conversation: a `Session`, its id, or None for `self.session_id`.
                A session id resumes the `Session` (user id, provider state) saved with the
                checkpoint.
            checkpoint_id: Resume from this checkpoint of the session instead of the latest;
                only while no message was stored after it.

        Raises:
            InvalidArgument: Both or neither of `message` and `responses` where that makes no
                sense: a message while requests are pending, responses when none are, an
                unknown request id or a wrong kind of answer, an unknown checkpoint id, or
                a checkpoint the conversation has moved on from.
        """
        from memweave.orchestration._handoff_engine import Run

        return Run(self, session).drive(message, responses, checkpoint_id)

    async def pending_requests(
        self, *, session: Session | str | None = None
    ) -> list[UserInputRequest | ToolApprovalRequest]:
        """Return the requests the session's latest checkpoint waits on (none when idle).

        A step stored but not checkpointed is completed in memory first (nothing is
        written), so its requests are returned under the ids `run()` will yield them with.
        """
        from memweave.orchestration._handoff_engine import Run

        return await Run(self, session).pending_requests()

    # Settings the engine reads; kept off the public surface.

    def _route_tools(self, agent: str) -> dict[str, Tool[..., Any]]:
        return self._routes.get(agent, {})

    def __repr__(self) -> str:
        return f"HandoffWorkflow(name={self.name!r}, agents={list(self.agents)!r})"
