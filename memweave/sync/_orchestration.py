"""Blocking orchestration: `Agent.run`, `initiate_chats`, `Sequential`, and handoff workflows."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Self

from memweave._portal import in_event_loop, iterate
from memweave.context.base import ContextProvider as AsyncContextProvider
from memweave.llm import ChatClient
from memweave.orchestration import agent as _agent
from memweave.orchestration import handoff as _handoff
from memweave.orchestration import sequential as _sequential
from memweave.orchestration._streaming import AgentEvent
from memweave.orchestration.agent import AgentInput, AgentResponse, ApprovalCallback
from memweave.orchestration.checkpoints import CheckpointStore as AsyncCheckpointStore
from memweave.orchestration.handoff import (
    Response,
    TerminationCondition,
    ToolApprovalRequest,
    UserInputRequest,
    WorkflowEvent,
)
from memweave.orchestration.sequential import ChatResult
from memweave.orchestration.tools import Tool
from memweave.providers.base import ChatHistoryProvider as AsyncChatHistoryProvider
from memweave.reducers.base import ChatReducer as AsyncChatReducer
from memweave.session import Session
from memweave.sync._checkpoints import CheckpointStore, adopt_store
from memweave.sync._context import ContextProvider
from memweave.sync._history import ChatHistoryProvider, adopt_provider
from memweave.sync._reducers import ChatReducer
from memweave.sync._wrap import Blocking, run, unwrap

__all__ = [
    "Agent",
    "ChatSpec",
    "HandoffBuilder",
    "HandoffWorkflow",
    "Sequential",
    "initiate_chats",
]


def off_loop(callback: Callable[..., Any] | None) -> Any:
    """Run a user's sync callback in a worker thread rather than on the portal loop, which
    every thread of the process shares (so a slow callback never stalls the others, and it
    may itself use the blocking face). Async callbacks and None pass through."""
    if callback is None or inspect.iscoroutinefunction(callback):
        return callback

    async def in_worker_thread(*args: Any) -> Any:
        result = await asyncio.to_thread(callback, *args)
        if inspect.isawaitable(result):
            result = await result
        return result

    return in_worker_thread


def _history_face(
    given: ChatHistoryProvider | AsyncChatHistoryProvider | None, used: AsyncChatHistoryProvider
) -> ChatHistoryProvider:
    return given if isinstance(given, ChatHistoryProvider) else adopt_provider(used)


def _store_face(
    given: CheckpointStore | AsyncCheckpointStore | None, used: AsyncCheckpointStore
) -> CheckpointStore:
    return given if isinstance(given, CheckpointStore) else adopt_store(used)


def _ref(ref: Any) -> Any:
    """An agent (or a sequence of agents or names) with blocking agents unwrapped."""
    if isinstance(ref, Agent):
        return ref._async
    if isinstance(ref, Sequence) and not isinstance(ref, str):
        return [_ref(item) for item in ref]
    return ref


class Agent(Blocking[_agent.Agent]):
    """Blocking face of `memweave.orchestration.Agent`: `run` answers one turn as a plain call.

    Takes the arguments of `Agent`; `history`, `context_providers` and `reducer` may be
    blocking objects of `memweave.sync` or async ones (which are then used on memweave's
    portal loop only). A sync `approve` callback runs in a worker thread.

    Example:
        ```python
        from memweave import sync
        from memweave.testing import ScriptedChatClient

        agent = sync.Agent("helper", ScriptedChatClient(["Hello!"]), instructions="Be brief.")
        reply = agent.run("Hi", session="user-42")
        assert reply.text == "Hello!"
        ```
    """

    def __init__(
        self,
        name: str,
        client: ChatClient,
        *,
        instructions: str = "",
        description: str = "",
        tools: Sequence[Tool[..., Any] | Callable[..., Any]] = (),
        history: ChatHistoryProvider | AsyncChatHistoryProvider | None = None,
        context_providers: Sequence[ContextProvider | AsyncContextProvider] = (),
        reducer: ChatReducer | AsyncChatReducer | None = None,
        max_tool_rounds: int = 8,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self._build(
            _agent.Agent,
            (name, client),
            {
                "instructions": instructions,
                "description": description,
                "tools": tools,
                "history": history,
                "context_providers": context_providers,
                "reducer": reducer,
                "max_tool_rounds": max_tool_rounds,
                "options": options,
            },
        )
        self._faces(history, context_providers)

    def _faces(
        self,
        history: ChatHistoryProvider | AsyncChatHistoryProvider | None,
        providers: Sequence[ContextProvider | AsyncContextProvider],
    ) -> None:
        self._history = _history_face(history, self._async.history)
        self._providers = tuple(
            given if isinstance(given, ContextProvider) else ContextProvider._adopt(given)
            for given in (providers or self._async.context_providers)
        )

    @classmethod
    def _adopt(cls, wrapped: _agent.Agent) -> Self:
        agent = super()._adopt(wrapped)
        agent._faces(None, ())
        return agent

    @property
    def name(self) -> str:
        """The agent's name."""
        return self._async.name

    @property
    def client(self) -> ChatClient:
        """The model client."""
        return self._async.client

    @property
    def instructions(self) -> str:
        """The system instructions."""
        return self._async.instructions

    @property
    def description(self) -> str:
        """What the agent does, as other agents read it."""
        return self._async.description

    @property
    def tools(self) -> tuple[Tool[..., Any], ...]:
        """The agent's tools."""
        return self._async.tools

    @property
    def history(self) -> ChatHistoryProvider:
        """Where `run` stores conversations (blocking)."""
        return self._history

    @property
    def context_providers(self) -> tuple[ContextProvider, ...]:
        """The context providers, in order (blocking)."""
        return self._providers

    @property
    def reducer(self) -> AsyncChatReducer | None:
        """The reducer applied to loaded history, if any."""
        return self._async.reducer

    @property
    def max_tool_rounds(self) -> int:
        """How many rounds of tool calls one turn may run."""
        return self._async.max_tool_rounds

    @property
    def options(self) -> Mapping[str, Any]:
        """Model options sent with every call (read-only)."""
        return self._async.options

    def run(
        self,
        message: AgentInput,
        *,
        session: Session | str | None = None,
        approve: ApprovalCallback | None = None,
    ) -> AgentResponse:
        """Answer `message` in the conversation of `session`, storing input and output."""
        return self._call(self._async.run, message, session=session, approve=off_loop(approve))

    def run_stream(
        self,
        message: AgentInput,
        *,
        session: Session | str | None = None,
        approve: ApprovalCallback | None = None,
    ) -> Iterator[AgentEvent]:
        """Run the turn `run` runs, yielding its events as they happen; the last is the
        `ResponseEvent`. Closing the iterator early stops the turn as
        `memweave.orchestration.Agent.run_stream` describes (input stored, no half message)."""
        if in_event_loop():
            raise self._refusal("run_stream")
        events = self._async.run_stream(message, session=session, approve=off_loop(approve))
        return iterate(events, 1, lambda: self._refusal("run_stream"))

    def as_tool(self, name: str | None = None, description: str | None = None) -> Tool[..., Any]:
        """Return a tool that runs this agent (see `memweave.orchestration.Agent.as_tool`)."""
        return self._async.as_tool(name, description)

    def __repr__(self) -> str:
        return f"memweave.sync.{self._async!r}"


class ChatSpec(_sequential.ChatSpec):
    """A `memweave.orchestration.ChatSpec` whose `recipient` may be a blocking `Agent`.

    The spec holds the async agent behind it (so it also works with the async
    `initiate_chats`). A sync `summary_method` function runs in a worker thread, and gets
    the async agents.
    """

    def __init__(self, recipient: Agent | _agent.Agent, message: str, **data: Any) -> None:
        if callable(data.get("summary_method")):
            data["summary_method"] = off_loop(data["summary_method"])
        if data.get("sender") is not None:
            data["sender"] = unwrap(data["sender"])
        super().__init__(unwrap(recipient), message, **data)


def _chat_spec(chat: Any) -> Any:
    """A dict chat spec with its blocking agents and sync summary function made async."""
    if not isinstance(chat, Mapping):
        return chat
    spec = {key: unwrap(value) for key, value in chat.items()}
    if callable(spec.get("summary_method")):
        spec["summary_method"] = off_loop(spec["summary_method"])
    return spec


def initiate_chats(
    sender: Agent | _agent.Agent | None,
    chats: Sequence[_sequential.ChatSpec | Mapping[str, Any]],
    *,
    history: ChatHistoryProvider | AsyncChatHistoryProvider | None = None,
    human_input_mode: _sequential.HumanInputMode = "NEVER",
    checkpoints: CheckpointStore | AsyncCheckpointStore | None = None,
    responses: Mapping[str, str | _handoff.TerminateRun] | None = None,
) -> list[ChatResult]:
    """Run two-agent chats one after another, each starting with the earlier ones' summaries.

    The blocking `memweave.orchestration.initiate_chats`; build the chats with
    `memweave.sync.ChatSpec` (or dicts) to name blocking agents as recipients and senders.

    Raises:
        InvalidArgument: A bad chat spec (checked before any chat runs).
        SyncCallInEventLoop: Called inside a running event loop.
    """
    given = [_chat_spec(chat) for chat in chats] if isinstance(chats, list | tuple) else chats
    return run(
        "memweave.sync.initiate_chats()",
        "memweave.orchestration.initiate_chats()",
        _sequential.initiate_chats,
        unwrap(sender),
        given,
        history=unwrap(history),
        human_input_mode=human_input_mode,
        checkpoints=unwrap(checkpoints),
        responses=responses,
    )


class Sequential(Blocking[_sequential.Sequential]):
    """Blocking face of `memweave.orchestration.Sequential`: a pipeline of agents, each
    answering the conversation so far. Takes the same arguments; agents and `history` may be
    blocking or async."""

    def __init__(
        self,
        agents: Sequence[Agent | _agent.Agent],
        *,
        chain_only_agent_responses: bool = False,
        history: ChatHistoryProvider | AsyncChatHistoryProvider | None = None,
    ) -> None:
        self._build(
            _sequential.Sequential,
            (_ref(agents),),
            {"chain_only_agent_responses": chain_only_agent_responses, "history": history},
        )
        self._agents = tuple(
            given if isinstance(given, Agent) else Agent._adopt(given) for given in agents
        )
        self._history = _history_face(history, self._async.history)

    @property
    def agents(self) -> tuple[Agent, ...]:
        """The agents, in order (blocking)."""
        return self._agents

    @property
    def history(self) -> ChatHistoryProvider:
        """Where conversations are stored (blocking)."""
        return self._history

    def run(self, message: AgentInput, *, session: Session | str | None = None) -> AgentResponse:
        """Pass `message` through every agent in order and return all of their messages."""
        return self._call(self._async.run, message, session=session)


class HandoffBuilder:
    """Builds a blocking `HandoffWorkflow`; the builder of `memweave.orchestration` with
    blocking (or async) agents, history and checkpoint store.

    Takes the same arguments and has the same methods. A sync `termination_condition` runs in
    a worker thread.

    Example:
        ```python
        workflow = (
            sync.HandoffBuilder("support", [triage, refunds])
            .with_checkpointing(sync.SQLCheckpointStore("sqlite+aiosqlite:///chat.db"))
            .build()
        )
        for event in workflow.run("My order arrived broken"):
            ...
        ```
    """

    def __init__(
        self,
        name: str,
        participants: Sequence[Agent | _agent.Agent],
        *,
        history: ChatHistoryProvider | AsyncChatHistoryProvider | None = None,
        termination_condition: TerminationCondition | None = None,
    ) -> None:
        self._builder = _handoff.HandoffBuilder(
            name,
            _ref(participants),
            history=unwrap(history),
            termination_condition=off_loop(termination_condition),
        )
        self._agents = {
            agent.name: agent if isinstance(agent, Agent) else Agent._adopt(agent)
            for agent in participants
        }
        self._history = history if isinstance(history, ChatHistoryProvider) else None
        self._store: CheckpointStore | None = None

    def with_start_agent(self, agent: Agent | _agent.Agent | str) -> Self:
        """Let `agent` answer first (default: the first participant)."""
        self._builder.with_start_agent(_ref(agent))
        return self

    def add_handoff(
        self,
        source: Agent | _agent.Agent | str | Sequence[Agent | _agent.Agent | str],
        targets: Agent | _agent.Agent | str | Sequence[Agent | _agent.Agent | str],
        description: str | None = None,
    ) -> Self:
        """Allow `source` (one agent or several) to hand off to each of `targets`."""
        self._builder.add_handoff(_ref(source), _ref(targets), description)
        return self

    def with_supervisor(
        self,
        supervisor: Agent | _agent.Agent | str,
        workers: Sequence[Agent | _agent.Agent | str] | None = None,
    ) -> Self:
        """Set up the supervisor pattern: `supervisor` starts and delegates to `workers`,
        which return control to it when they answer."""
        self._builder.with_supervisor(_ref(supervisor), _ref(workers))
        return self

    def with_state(self, schema: type[Any] | Mapping[str, Any], *, initial: Any = None) -> Self:
        """Give the workflow a typed shared state (a pydantic model class or a JSON dict)."""
        self._builder.with_state(schema, initial=initial)
        return self

    def with_autonomous_mode(
        self,
        agents: Sequence[Agent | _agent.Agent | str] | None = None,
        prompts: str | Mapping[str, str] | None = None,
        turn_limits: int | Mapping[str, int] | None = None,
    ) -> Self:
        """Let agents continue on their own instead of asking the user."""
        self._builder.with_autonomous_mode(_ref(agents), prompts, turn_limits)
        return self

    def with_max_handoffs(self, max_handoffs: int) -> Self:
        """Stop the run instead of handing off more than `max_handoffs` times after one user
        message."""
        self._builder.with_max_handoffs(max_handoffs)
        return self

    def with_ping_pong_guard(self, enabled: bool = True) -> Self:
        """Stop the run when two agents bounce the conversation between them. On by default."""
        self._builder.with_ping_pong_guard(enabled)
        return self

    def with_checkpointing(self, store: CheckpointStore | AsyncCheckpointStore) -> Self:
        """Keep checkpoints in `store` (blocking or async), so runs resume in another process."""
        self._builder.with_checkpointing(unwrap(store))
        self._store = store if isinstance(store, CheckpointStore) else None
        return self

    def build(self) -> HandoffWorkflow:
        """Return the workflow. The builder can go on being changed without affecting it."""
        workflow = self._builder.build()
        return HandoffWorkflow(
            workflow,
            agents=dict(self._agents),
            history=_history_face(self._history, workflow.history),
            checkpoints=_store_face(self._store, workflow.checkpoints),
        )


class HandoffWorkflow(Blocking[_handoff.HandoffWorkflow]):
    """Blocking face of `memweave.orchestration.HandoffWorkflow`; build it with
    `memweave.sync.HandoffBuilder`. `run` is a plain iterator of the same events."""

    def __init__(
        self,
        workflow: _handoff.HandoffWorkflow,
        *,
        agents: dict[str, Agent],
        history: ChatHistoryProvider,
        checkpoints: CheckpointStore,
    ) -> None:
        super().__init__(workflow)
        self.agents: Mapping[str, Agent] = agents
        """The participants by name (blocking)."""
        self.history = history
        """Where the conversation is stored (blocking)."""
        self.checkpoints = checkpoints
        """Where checkpoints are kept (blocking)."""

    @property
    def name(self) -> str:
        """The workflow's name."""
        return self._async.name

    @property
    def start_agent(self) -> str:
        """The agent that answers first."""
        return self._async.start_agent

    @property
    def session_id(self) -> str:
        """The session `run` uses when given none."""
        return self._async.session_id

    def routes(self) -> dict[str, list[str]]:
        """Return who may hand off to whom: source name to target names."""
        return self._async.routes()

    def supervisors(self) -> dict[str, str]:
        """Return each worker's supervisor."""
        return self._async.supervisors()

    def run(
        self,
        message: AgentInput | None = None,
        *,
        responses: Mapping[str, Response] | None = None,
        session: Session | str | None = None,
        checkpoint_id: str | None = None,
        stream: bool = False,
    ) -> Iterator[WorkflowEvent]:
        """Drive the workflow and yield its events until it pauses or ends.

        Events are fetched one at a time, so the run goes only as far as the caller has
        read (as with the async `run`).
        """
        if in_event_loop():
            raise self._refusal("run")
        events = self._async.run(
            message,
            responses=responses,
            session=session,
            checkpoint_id=checkpoint_id,
            stream=stream,
        )
        return iterate(events, 1, lambda: self._refusal("run"))

    def pending_requests(
        self, *, session: Session | str | None = None
    ) -> list[UserInputRequest | ToolApprovalRequest]:
        """Return the requests the session's latest checkpoint waits on (none when idle)."""
        return self._call(self._async.pending_requests, session=session)

    def get_state(self, *, session: Session | str | None = None) -> Any:
        """Return the session's shared state (a model instance, a dict, or None)."""
        return self._call(self._async.get_state, session=session)

    def __repr__(self) -> str:
        return f"memweave.sync.{self._async!r}"
