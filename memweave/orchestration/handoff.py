"""Handoff workflows: agents pass one conversation between them with `handoff_to_<name>` tools.

`HandoffBuilder` sets up who may hand off to whom (a supervisor and its workers, routes to
`END` and to oneself), autonomous mode, limits, a typed shared state, a termination
condition and checkpointing; participants may be nested workflows (`Team`).
`HandoffWorkflow.run` yields events (`AgentMessage`, `Handoff`, `UserInputRequest`,
`ToolApprovalRequest`, `WorkflowOutput`, and streamed deltas) and pauses when a person must
answer. The conversation is stored once, in one `ChatHistoryProvider`; each agent sees all
user and agent text plus only its own tool calls. Every step is stored and checkpointed
before its events are yielded, so a run resumes in another process: a failed model call is
re-run on resume, and a step that was stored but not checkpointed is completed, not re-run.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Self, TypeAlias

from memweave.errors import InvalidArgument
from memweave.messages import ChatMessage
from memweave.orchestration._events import (
    AgentMessage,
    Handoff,
    Response,
    StopReason,
    TerminateRun,
    ToolApprovalRequest,
    UserInputRequest,
    WorkflowEvent,
    WorkflowOutput,
)
from memweave.orchestration._routes import END_TOOL, HANDOFF_TOOL_PREFIX, route_tables
from memweave.orchestration._runtime import AgentInput
from memweave.orchestration._state import END, StateSpec
from memweave.orchestration._team import Team
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
    "END",
    "END_TOOL",
    "HANDOFF_TOOL_PREFIX",
    "AgentMessage",
    "ApprovalDecision",
    "Handoff",
    "HandoffBuilder",
    "HandoffWorkflow",
    "Participant",
    "Response",
    "StopReason",
    "TerminateRun",
    "TerminationCondition",
    "ToolApprovalRequest",
    "UserInputRequest",
    "WorkflowEvent",
    "WorkflowOutput",
]

DEFAULT_AUTONOMOUS_PROMPT = "User did not respond. Continue assisting autonomously."
"""The user turn an autonomous agent receives instead of waiting for the user."""

DEFAULT_TURN_LIMIT = 50
"""Continue prompts an autonomous agent receives, per user message, before it asks the user."""

TerminationCondition: TypeAlias = Callable[[list[ChatMessage]], bool | Awaitable[bool]]
"""Called with the whole conversation after every stored step; True ends the run."""

Participant: TypeAlias = Agent | Team
"""A member of a workflow: an agent, or a nested workflow wrapped in a `Team`."""

AgentRef: TypeAlias = Agent | Team | str


class HandoffBuilder:
    """Builds a `HandoffWorkflow`: participants, routes, autonomy, limits, state, checkpoints.

    By default every participant may hand off to every other, the first participant starts,
    agents ask the user whenever they answer without handing off, and checkpoints are kept
    in memory. `with_supervisor` sets up the supervisor pattern instead, `add_handoff(agent,
    END)` lets an agent end the run, and `add_handoff(agent, agent)` lets it route to itself.
    A participant may be a nested workflow wrapped in a `Team`.

    Args:
        name: The workflow's name; checkpoints are kept per `(name, session)`.
        participants: The agents and teams (at least two, unique names).
        history: Where the conversation is stored; a new in-memory provider when None.
        termination_condition: Called with the whole conversation after every stored step
            (sync or async); True ends the run with a `WorkflowOutput`.

    Raises:
        InvalidArgument: A bad name, fewer than two participants, duplicate names, or a tool
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
        participants: Sequence[Participant],
        *,
        history: ChatHistoryProvider | None = None,
        termination_condition: TerminationCondition | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise InvalidArgument("name", name, "a workflow name is a non-empty str of <= 255")
        if isinstance(participants, Agent | Team) or not isinstance(participants, Sequence):
            raise InvalidArgument("participants", participants, "expected a sequence of agents")
        if len(participants) < 2:
            raise InvalidArgument("participants", participants, "a handoff needs two agents")
        agents: dict[str, Participant] = {}
        for agent in participants:
            if not isinstance(agent, Agent | Team):
                raise InvalidArgument("participants", agent, "expected an Agent or a Team")
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
        self._returns: dict[str, str] = {}
        self._autonomous: dict[str, tuple[str, int]] = {}
        self._max_handoffs: int | None = None
        self._store: CheckpointStore | None = None
        self._ping_pong = True
        self._state: StateSpec | None = None

    def _resolve(self, ref: AgentRef, what: str, *, end: bool = False) -> str:
        if end and ref == END:
            return END
        name = ref.name if isinstance(ref, Agent | Team) else ref
        if not isinstance(name, str) or name not in self._agents:
            raise InvalidArgument(
                what, name, f"not a participant; participants: {', '.join(self._agents)}"
            )
        if isinstance(ref, Agent | Team) and ref is not self._agents[name]:
            raise InvalidArgument(what, name, "a different agent object has this name")
        return name

    def _resolve_many(
        self, refs: AgentRef | Sequence[AgentRef], what: str, *, end: bool = False
    ) -> list[str]:
        if isinstance(refs, Agent | Team | str):
            return [self._resolve(refs, what, end=end)]
        return [self._resolve(ref, what, end=end) for ref in refs]

    def _agent_source(self, ref: AgentRef, what: str) -> str:
        name = self._resolve(ref, what)
        if isinstance(self._agents[name], Team):
            raise InvalidArgument(
                what,
                name,
                "a team answers without tools, so it cannot hand off, delegate or go on "
                "autonomously",
            )
        return name

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

        A target may be `END`: the source gets an `end_run` tool that ends the run with its
        answer (a `WorkflowOutput` with `reason="ended"`), instead of asking the user. A
        target may be the source itself: it may then route the conversation back to itself,
        for another step of its own with a new task (LangGraph's self-loop).

        A message that calls two handoff tools hands off once, to the first target; each
        other call gets a tool error saying it was not carried out (a supervisor's
        delegations are the exception: they fan out, see `with_supervisor`).

        Raises:
            InvalidArgument: An agent is not a participant, a source is a `Team`, or the
                source has a tool of its own named `end_run`.
        """
        if description is not None and not isinstance(description, str):
            raise InvalidArgument("description", description, "must be a str or None")
        if isinstance(source, Agent | Team | str):
            sources = [self._agent_source(source, "source")]
        else:
            sources = [self._agent_source(ref, "source") for ref in source]
        names = self._resolve_many(targets, "targets", end=True)
        routes = self._routes if self._routes is not None else {}
        for src in sources:
            for target in names:
                if target == END and any(t.name == END_TOOL for t in self._agents[src].tools):
                    raise InvalidArgument(
                        "targets",
                        END,
                        f"agent {src!r} has a tool named {END_TOOL!r}, the name of the tool "
                        "that ends the run",
                    )
                routes.setdefault(src, {})[target] = description
        self._routes = routes
        return self

    def with_supervisor(
        self, supervisor: AgentRef, workers: Sequence[AgentRef] | None = None
    ) -> Self:
        """Set up the supervisor pattern: `supervisor` starts and delegates to `workers`.

        The supervisor gets a `handoff_to_<worker>` tool per worker (its `task` argument is
        the worker's task). A worker that answers returns control to the supervisor by
        itself, with no handoff tool: its answer is in the conversation, and the supervisor
        decides what comes next (delegate again, answer the user, or end the run where a
        route to `END` was added). When one supervisor message delegates to several workers,
        they all run, one after another in call order, and control returns to the supervisor
        after the last one answered.

        The supervisor may give the same worker several tasks after one user message; the
        ping-pong guard stops only a delegation that makes no progress: one that gives the
        worker exactly what an earlier delegation since the last user message gave it (the
        same `task`, the same text written with it, the same state update, and the same
        shared state). `with_max_handoffs` bounds the number of delegations.

        Other routes (`add_handoff`) may be added before or after, e.g. a worker's route to
        `END` or to another worker.

        Args:
            supervisor: The agent that delegates; it answers first.
            workers: The agents and teams it delegates to; all other participants when None.

        Raises:
            InvalidArgument: The supervisor is a `Team` or among the workers, or a worker
                already returns to another supervisor (nest a `Team` for a hierarchy).
        """
        boss = self._agent_source(supervisor, "supervisor")
        if workers is None:
            chosen = [name for name in self._agents if name != boss]
        else:
            chosen = self._resolve_many(workers, "workers")
        if not chosen:
            raise InvalidArgument("workers", workers, "a supervisor needs at least one worker")
        for worker in chosen:
            if worker == boss:
                raise InvalidArgument("workers", worker, "the supervisor cannot be its own worker")
            earlier = self._returns.get(worker)
            if earlier is not None and earlier != boss:
                raise InvalidArgument(
                    "workers",
                    worker,
                    f"already a worker of supervisor {earlier!r}; a worker has one supervisor "
                    "(nest a Team for a hierarchy of supervisors)",
                )
        routes = self._routes if self._routes is not None else {}
        for worker in chosen:
            routes.setdefault(boss, {}).setdefault(worker, None)
            self._returns[worker] = boss
        self._routes = routes
        self._start = boss
        return self

    def with_state(self, schema: type[Any] | Mapping[str, Any], *, initial: Any = None) -> Self:
        """Give the workflow a typed shared state, kept per session and in every checkpoint.

        The state is a pydantic model instance (`schema` is the model class) or a JSON dict
        (`schema` is the dict, which is also the initial state). Handoff tools get an
        `update` argument (the schema's fields, none required): a structured payload merged
        into the state when the handoff is carried out. Tools read and change the state
        through a parameter annotated `Annotated[MyState, InjectedState]` and may return
        `Command(update=..., goto=...)`. Every update is checked against the schema; one
        that breaks it goes back to the model as a tool error, and the run goes on.
        `HandoffWorkflow.get_state(session=...)` reads it; `WorkflowOutput.state` holds it.

        Args:
            schema: A pydantic model class, or the initial JSON dict.
            initial: The initial state for a model class (an instance or a dict); by default
                the model built from its field defaults.

        Raises:
            InvalidArgument: `schema` is neither, or the initial state is not valid.
        """
        self._state = StateSpec(schema, initial)
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
            agents: The autonomous agents; None means all of them (teams excepted).
            prompts: The continue prompt, for all or per agent name (default
                `DEFAULT_AUTONOMOUS_PROMPT`).
            turn_limits: The limit, for all or per agent name (default `DEFAULT_TURN_LIMIT`).
        """
        if agents is None:
            chosen = [n for n, agent in self._agents.items() if isinstance(agent, Agent)]
        else:
            chosen = [self._agent_source(ref, "agents") for ref in agents]
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
        `max_handoffs` times after one user message. A worker's automatic return to its
        supervisor is not counted; each delegation is."""
        if isinstance(max_handoffs, bool) or not isinstance(max_handoffs, int) or max_handoffs < 0:
            raise InvalidArgument("max_handoffs", max_handoffs, "must be an int >= 0")
        self._max_handoffs = max_handoffs
        return self

    def with_ping_pong_guard(self, enabled: bool = True) -> Self:
        """Stop the run when agents bounce the conversation without progress. On by default.

        With no user message between, the guard refuses (and ends the run with
        `reason="ping_pong"`):

        - a repeated bounce, A -> B -> A -> B: A hands to B a second time after B handed
          it back;
        - a bare hand-back, A -> B -> A where B wrote no text since it took over;
        - a supervisor's delegation, or an agent's route to itself, that makes no progress:
          it gives the target exactly what an earlier one gave it (same task, same text
          written with it, same state update, same shared state).

        A hand-back in which B says something (say, a tutor explaining that the question
        belongs to another tutor) is allowed, so A can route the conversation again
        (triage -> math -> triage -> history); so is a supervisor giving a worker a new task.
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
        routes, targets = route_tables(self._agents, self._routes, self._state)
        return HandoffWorkflow(
            name=self._name,
            agents=dict(self._agents),
            start=self._start,
            routes=routes,
            targets=targets,
            returns=dict(self._returns),
            history=self._history if self._history is not None else InMemoryChatHistoryProvider(),
            checkpoints=self._store if self._store is not None else InMemoryCheckpointStore(),
            termination_condition=self._termination,
            autonomous=dict(self._autonomous),
            max_handoffs=self._max_handoffs,
            ping_pong_guard=self._ping_pong,
            state=self._state,
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
        agents: dict[str, Participant],
        start: str,
        routes: dict[str, dict[str, Tool[..., Any]]],
        targets: dict[str, dict[str, str]],
        returns: dict[str, str],
        history: ChatHistoryProvider,
        checkpoints: CheckpointStore,
        termination_condition: TerminationCondition | None,
        autonomous: dict[str, tuple[str, int]],
        max_handoffs: int | None,
        ping_pong_guard: bool,
        state: StateSpec | None,
    ) -> None:
        self.name = name
        """The workflow's name."""
        self.agents: Mapping[str, Participant] = agents
        """The participants (agents and teams) by name."""
        self.start_agent = start
        """The agent that answers first."""
        self.history = history
        """Where the conversation is stored."""
        self.checkpoints = checkpoints
        """Where checkpoints are kept."""
        self.session_id = uuid.uuid4().hex
        """The session `run` uses when given none."""
        self._routes = routes
        self._targets = targets
        self._returns = returns
        self._termination = termination_condition
        self._autonomous = autonomous
        self._max_handoffs = max_handoffs
        self._ping_pong = ping_pong_guard
        self._state = state

    def routes(self) -> dict[str, list[str]]:
        """Return who may hand off to whom: source name to target names (`END` where an
        agent may end the run)."""
        return {source: list(names.values()) for source, names in self._targets.items()}

    def supervisors(self) -> dict[str, str]:
        """Return each worker's supervisor (see `HandoffBuilder.with_supervisor`)."""
        return dict(self._returns)

    async def get_state(self, *, session: Session | str | None = None) -> Any:
        """Return the session's shared state: a model instance or a dict (None when the
        workflow has no state). A session with no checkpoint yet has the initial state."""
        if self._state is None:
            return None
        session_id = session.id if isinstance(session, Session) else session or self.session_id
        found = await self.checkpoints.get_checkpoint(self.name, session_id)
        data = found.state if found is not None and found.state is not None else None
        return self._state.load(data if data is not None else self._state.initial())

    def run(
        self,
        message: AgentInput | None = None,
        *,
        responses: Mapping[str, Response] | None = None,
        session: Session | str | None = None,
        checkpoint_id: str | None = None,
        stream: bool = False,
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
            stream: Stream the models' replies: `TextDelta` (and `ToolCallDelta`) events are
                yielded while a model writes, before the step's `AgentMessage`. What is
                stored is the same as without streaming; deltas of a step that fails or is
                abandoned are followed by no `AgentMessage`, and the step is run again.

        Raises:
            InvalidArgument: Both or neither of `message` and `responses` where that makes no
                sense: a message while requests are pending, responses when none are, an
                unknown request id or a wrong kind of answer, an unknown checkpoint id, or
                a checkpoint the conversation has moved on from.
        """
        from memweave.orchestration._handoff_engine import Run

        return Run(self, session, stream=stream).drive(message, responses, checkpoint_id)

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

    def _route_target(self, agent: str, tool_name: str) -> str | None:
        return self._targets.get(agent, {}).get(tool_name)

    def __repr__(self) -> str:
        return f"HandoffWorkflow(name={self.name!r}, agents={list(self.agents)!r})"
